"""The command line's subcommands beyond answering: `qa eval` and `qa train`, and the flags they share with `qa.cli`.

Only `qa.cli` imports this package. Evaluation (`qa.evaluation`, `qa.eval_sets`) and training
(`qa.training`) take plain arguments, `Settings` or a `TrainConfig`, and know nothing of argparse.
"""
