# Mona: two Mona modules per block (bottleneck 64) after the attention and
# MLP residuals; only they train in the backbone.
method = dict(adapter=dict(type='Mona', bottleneck=64), tuning='adapter')
