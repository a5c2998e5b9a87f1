"""The tidy trials table (results/<dataset>/trials.csv): one row per trial, with the same
columns for every dataset, our measurements (flattened from the trial records,
infpop.measure.records.tidy_row) and the paper's published trials (infpop.data.paper)."""

#: The fields of a trial that name it and say how it went: the first columns of the tidy table.
TRIAL_COLUMNS = [
    "hardware",
    "engine",
    "model",
    "n_gpus",
    "max_new_tokens",
    "batch_size",
    "rep",
    "status",
    "throughput_tokens_per_s",
]

#: Columns of the tidy trials table (results/<dataset>/trials.csv), in order.
TIDY_COLUMNS = [
    *TRIAL_COLUMNS,
    "generated_tokens",
    "prompt_tokens",
    "prompts",
    "batches",
    "batches_completed",
    "generation_seconds",
    "load_seconds",
    "device_seconds",
    "latency_p50_s",
    "latency_p95_s",
    "peak_memory_bytes",
    "peak_memory_kind",
    "energy_joules",
    "tokens_per_joule",
    "gpu_name",
    "n_gpus_seen",
    "engine_version",
    "sequence",
    "prefix_caching",
    "prefix_cache_hit_rate",
    "offloaded",
    "model_revision",
    "settings",
    "sequential",
    "throughput_ci_low",
    "throughput_ci_high",
    "ci_half_width_pct",
    "git_commit",
    "error",
    "path",
]
