"""NetAdapt-style pruning to a latency target, `python -m mnas.prune model=mobilenet_v2 target=0.7x`.

    settings   Settings: the schedule, and how a proposal is fine-tuned and scored
    netadapt   a unit's surgery with torch-pruning, the NetAdapt loop (resumable); units are mnas.nn.units'
    oneshot    one-shot NetAdapt: the start trained once as a slimmable network, proposals scored as its slimmings
    proposals  proposals scored here or in worker processes (bit-equal either way)
    run        run_prune: the run directory, start weights, final fine-tune, result files, and the benchmark
               against the width multiplier of the same latency (compare_width)
    __main__   the command: config -> run_prune
"""
