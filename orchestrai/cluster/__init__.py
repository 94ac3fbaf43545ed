"""Running a batch's rows on a Ray cluster (the `orchestrai[ray]` extra).

`connect` starts a loopback-only local Ray instance or joins a cluster (failing fast on a dead
address); `limits` holds the actor that owns the rate limiters and the budget of the whole batch,
and the proxies workers hand to the engine; `executor` sends rows out as Ray tasks and streams
their results back. Nothing here is imported unless `--executor ray` is asked for.
"""
