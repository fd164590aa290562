# LoRand: multi-branch low-rank adapters on the attention and MLP branch
# outputs; only they train in the backbone.
method = dict(adapter=dict(type='LoRand'), tuning='adapter')
