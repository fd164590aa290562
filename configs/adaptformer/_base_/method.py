# AdaptFormer: a bottleneck (64) branch beside each MLP, scaled by 0.1; only
# it trains in the backbone.
method = dict(
    adapter=dict(
        type='AdaptFormer', bottleneck=64, scale=0.1, init='trunc_normal'),
    tuning='adapter')
