# Fixed: the backbone is frozen; neck and head train.
method = dict(adapter=None, tuning='fixed')
