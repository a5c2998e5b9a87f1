"""Hyperparameter optimisation of inference (the paper's RQ5, InfPop, and beyond).

- space.py: the search space (GPU count x batch size) and what one evaluation returns;
- optimisers.py: the optimisers behind one interface (Hyperopt TPE, Optuna TPE, random, grid and
  our landscape-aware sampler);
- search.py: the evaluation loop every use shares (budget, history, why the search stopped);
- objectives.py: throughput, throughput under a p95-latency limit, the Pareto front;
- rq5.py: the upgrade/downgrade replay on a trials table; study.py: optimiser efficiency on every
  landscape of a dataset; tune.py: live tuning through real trials; each with its figure.
"""
