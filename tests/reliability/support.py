"""What the reliability runs share.

Re-exported here for existing imports; the home is tests/support/reliability.py.
"""

# Thin re-exports (no definitions here): import from tests/support in new code.
from tests.support.emulator import emulator_truth as emulator_truth
from tests.support.emulator import set_faults as set_faults
from tests.support.reliability import CALLBACK_SECRET as CALLBACK_SECRET
from tests.support.reliability import NUMBERS as NUMBERS
from tests.support.reliability import TOKEN as TOKEN
from tests.support.reliability import HealthProbe as HealthProbe
from tests.support.reliability import LiveTraffic as LiveTraffic
from tests.support.reliability import RunningTraffic as RunningTraffic
from tests.support.reliability import Tally as Tally
from tests.support.reliability import batch_ids as batch_ids
from tests.support.reliability import generated_traffic as generated_traffic
from tests.support.reliability import listener as listener
from tests.support.reliability import live_traffic as live_traffic
from tests.support.reliability import reason_of as reason_of
from tests.support.reliability import replayed_batches as replayed_batches
from tests.support.reliability import rss_kib as rss_kib
from tests.support.waiting import settle as settle
