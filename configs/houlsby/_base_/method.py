# Adapter (Houlsby): bottleneck (64) adapters on the attention and MLP branch
# outputs; only they train in the backbone.
method = dict(adapter=dict(type='Houlsby', bottleneck=64), tuning='adapter')
