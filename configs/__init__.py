"""Experiment configs: `python main.py --config=configs/<dataset>_<method>.py[:smoke]`."""
