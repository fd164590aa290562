# The hooks every mmadapter config adds to the stock runtime: parameter
# report at start, stop on a non-finite loss, random states kept in
# checkpoints so that --resume repeats the run exactly, and, also under the
# stock tools (where importing mmadapter switches nothing on): datasets that
# cannot be trained on stopped with the reason, checkpoints loaded
# weights-only with the types real checkpoints hold. (custom_imports stays
# in each setting: some stock bases set it too, and mmengine refuses a key
# defined by two sibling bases.)
custom_hooks = [
    dict(type='mmadapter.ParameterReportHook'),
    dict(type='mmadapter.NonFiniteLossHook'),
    dict(type='mmadapter.RandomStateHook'),
    dict(type='mmadapter.DatasetCheckHook'),
    dict(type='mmadapter.CheckpointTypesHook'),
]
