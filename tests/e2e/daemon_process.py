"""The daemon as a real child process.

Re-exported here for existing imports; the home is tests/support/daemon_process.py.
"""

# Thin re-exports (no definitions here): import from tests/support in new code.
from tests.support.daemon_process import APP as APP
from tests.support.daemon_process import EXIT_TIMEOUT as EXIT_TIMEOUT
from tests.support.daemon_process import READY_TIMEOUT as READY_TIMEOUT
from tests.support.daemon_process import SECRET_ID as SECRET_ID
from tests.support.daemon_process import SECRET_KEY as SECRET_KEY
from tests.support.daemon_process import DaemonProcess as DaemonProcess
from tests.support.daemon_process import daemon_config as daemon_config
from tests.support.daemon_process import running_daemon as running_daemon
