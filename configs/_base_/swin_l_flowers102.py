# Oxford 102 Flowers (102 classes), Swin-L: mmpretrain's Flowers102 reads
# data_root/{jpg/, imagelabels.mat, setid.mat}; trains on the train + val
# lists (2,040 images) and tests on the test list (6,149).
_base_ = ['./swin_l_classification.py']

num_classes = 102
data_root = 'data/flowers102'
model = dict(head=dict(num_classes=num_classes))
data_preprocessor = dict(num_classes=num_classes)
train_dataloader = dict(
    dataset=dict(type='Flowers102', data_root=data_root, split='trainval'))
val_dataloader = dict(
    dataset=dict(type='Flowers102', data_root=data_root, split='test'))
test_dataloader = val_dataloader
