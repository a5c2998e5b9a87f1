"""The RQ5 replay's faithful mode on the paper's trials, as one process (what bench/rq5_replay_time.sh
times): 4 experiments x 20 models x 10 repeats x up to 100 Hyperopt TPE evaluations.

    python bench/rq5_replay.py results/paper/trials.csv [processes]
"""

import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the infpop package beside bench/
from infpop.optimise import rq5  # noqa: E402

if __name__ == "__main__":
    started = time.monotonic()
    trials = pd.read_csv(sys.argv[1])
    processes = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    directions = [rq5.Direction("upgrade", "v100", "a100"), rq5.Direction("downgrade", "a100", "v100")]
    results = rq5.run_all(rq5.faithful_experiments(trials, directions, 5), rq5.ReplaySettings(), threads=processes)
    summary = rq5.summary(results)
    print(
        summary[
            [
                "engine",
                "direction",
                "n_models",
                "median_of_medians",
                "mean_of_medians",
                "mean_of_medians_below_300",
                "median_evaluations_used",
            ]
        ]
        .round(2)
        .to_string(index=False)
    )
    print(f"faithful RQ5 replay on {processes} process(es): {time.monotonic() - started:.1f} s")
