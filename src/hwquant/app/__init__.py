"""The applications on top of the pipeline: command line, training, demo, benchmarks, reports,
reliability."""
