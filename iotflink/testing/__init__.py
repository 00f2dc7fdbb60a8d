"""Reference implementations (oracles) and harnesses that tests and benchmarks compare the jobs
against; no Flink job imports this package."""
