# Partial-1: only the last block of the last stage trains.
method = dict(adapter=None, tuning='partial-1')
