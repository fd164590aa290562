# Full fine-tuning: every backbone parameter trains.
method = dict(adapter=None, tuning='full')
