"""The find beside the hand designs, `python -m mnas.compare device=pixel budget=15ms run=<search run>`.

    run       Recipe, the variants, training with a cache (worker processes), run_compare
    report    acceptance checks (win rule, speed-up over the V2 width curve), the Pareto plot, report.md
    __main__  the command: config -> run_compare
"""
