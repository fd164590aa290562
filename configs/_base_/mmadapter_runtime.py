# The hooks every mmadapter config adds to the stock runtime: parameter
# report at start, stop on a non-finite loss, random states kept in
# checkpoints so that --resume repeats the run exactly. (custom_imports stays
# in each setting: some stock bases set it too, and mmengine refuses a key
# defined by two sibling bases.)
custom_hooks = [
    dict(type='mmadapter.ParameterReportHook'),
    dict(type='mmadapter.NonFiniteLossHook'),
    dict(type='mmadapter.RandomStateHook'),
]
