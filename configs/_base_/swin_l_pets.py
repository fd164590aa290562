# Oxford-IIIT Pet (37 breeds), Swin-L: mmpretrain's OxfordIIITPet reads
# data_root/{images/, annotations/trainval.txt, annotations/test.txt};
# trains on trainval (3,680 images), tests on test (3,669).
_base_ = ['./swin_l_classification.py']

num_classes = 37
data_root = 'data/oxford_pets'
model = dict(head=dict(num_classes=num_classes))
data_preprocessor = dict(num_classes=num_classes)
train_dataloader = dict(
    dataset=dict(type='OxfordIIITPet', data_root=data_root, split='trainval'))
val_dataloader = dict(
    dataset=dict(type='OxfordIIITPet', data_root=data_root, split='test'))
test_dataloader = val_dataloader
