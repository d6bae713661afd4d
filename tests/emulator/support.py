"""Two ways to call an emulator: raw signed HTTP and the official SDK.

Re-exported here for existing imports; the home is tests/support/emulator_api.py.
"""

# Thin re-exports (no definitions here): import from tests/support in new code.
from tests.support.emulator_api import APP as APP
from tests.support.emulator_api import NUMBER as NUMBER
from tests.support.emulator_api import Api as Api
from tests.support.emulator_api import in_thread as in_thread
from tests.support.emulator_api import receipt as receipt
from tests.support.emulator_api import reply as reply
from tests.support.emulator_api import sdk_client as sdk_client
