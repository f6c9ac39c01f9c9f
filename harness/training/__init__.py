"""One run, top to bottom: ``task.run`` (validate, run directory, build, fit, record), ``build`` (the parts),
``fit`` (the loop over epochs) and ``step`` (one training epoch, step by step)."""
