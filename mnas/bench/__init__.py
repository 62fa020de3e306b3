"""Benchmarks of the accuracy signal (not in CI; they write CSV, a plot and a summary).

    proxy_check  `python -m mnas.bench.proxy_check`: how well the proxy task ranks archs (seed-to-seed ceiling)
    rank_check   `python -m mnas.bench.rank_check`: does an estimator rank archs as stand-alone training does
                 (over a latency range, or at equal latency: iso_ms=15)
"""
