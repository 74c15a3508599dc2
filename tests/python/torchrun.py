"""torchrun, as `python3 tests/python/torchrun.py ARGS`: Debian's torch 1.13 torchrun fails on
Python 3.11 before it starts any worker (Std.from_str("0") is None there, since Python 3.11 no
longer iterates a zero-valued IntFlag member; even `torchrun --no_python --nproc_per_node 2
/bin/echo` fails). This maps that None back to Std.NONE and runs torchrun unchanged."""
import sys
from torch.distributed.elastic.multiprocessing import api
original = api.Std.from_str.__func__
def from_str(cls, vm):
    value = original(cls, vm)
    return api.Std.NONE if value is None else value
api.Std.from_str = classmethod(from_str)
from torch.distributed.run import main
sys.argv[0] = "torchrun"
main()
