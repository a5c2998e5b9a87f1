"""Analysis of a tidy trials table (results/<dataset>/trials.csv): the paper's RQ1-RQ4, one module
per research question as the workflow's scripts are (rq1 .. rq4, discussion), each with its
tables, statistics and figures; every one starts from the trials of `selection`. Beside them:
stats (the tests), comparison (ours against the paper's numbers), noise (repetitions), agreement
(the engines' outputs)."""
