"""`python -m pipeline` and the `relaywatch` command: the process is tuned for a relaywatch
run (pipeline.tuning) before Polars is imported, then the command line runs."""


def run() -> None:
    from pipeline import tuning

    tuning.apply()
    from pipeline.cli import main

    main()


if __name__ == "__main__":
    run()
