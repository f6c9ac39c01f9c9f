"""The evaluation protocols beside the clean one (conf/protocol/; docs/concepts/protocols.md).

embeddings   a run's test embeddings on disk (the Reality Check protocol's concatenated score)
folds        the k fold runs of one Reality Check configuration (an Optuna trial runs them all), and the
             tables' reading of them as one model: separated (mean of the folds) and concatenated
"""
