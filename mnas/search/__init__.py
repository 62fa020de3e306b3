"""The latency-aware search, `python -m mnas.search device=pixel budget=15ms` (the main command).

    study       SearchSettings, the Optuna study (open, resume, objective, baselines), run_search, the
                recommendation against the hand designs
    estimators  accuracy estimators (train: stand-alone; supernet: mnas.supernet), make_estimator
    report      trials table, Pareto plot, printed summary
    __main__    the command: config -> search -> mnas.pipeline (fine-tune, prune, export)
"""
