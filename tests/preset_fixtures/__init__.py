"""Tiny checkpoints laid out the way each preset's published hub repository is.

Every builder writes a directory with the published repository's file names,
config ``model_type`` / ``architectures``, tokenizer kind (SentencePiece model,
``tokenizer.json``, or both), processor config keys and chat template, at tiny
sizes with random weights, so a preset loads it through exactly the code a user
with the real checkpoint runs. Each builder's docstring cites the published files
it mirrors and says which details could not be confirmed offline.
"""
