"""ctxbench: evaluation of vision-language models where meaning depends on context.

Data flows one way (each step has one module):

    tasks/*.yaml --taskspec--> dataset loader (datasets/, synth/)
      --> backend encodings, cached (encoder.py, cache.py)
      --> family evaluator (families/) --> metrics with CIs (metrics/, bootstrap.py)
      --> results JSON (results.py) --> leaderboard (leaderboard.py)

The runner (runner.py) drives that flow for every backend x task cell; the CLI
(cli.py) is a thin layer over it.
"""

__version__ = "0.1.0"
