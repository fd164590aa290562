# NormTuning: only the backbone's normalisation layers train.
method = dict(adapter=None, tuning='norm')
