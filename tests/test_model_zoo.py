"""The model zoo as OpenMMLab users know it: every method folder under
configs/ has a README.md and a metafile.yml that lists each of its configs,
and model-index.yml imports every metafile."""
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / 'configs'
#: folders that hold no table model of their own
NOT_MODELS = {'_base_', 'toy'}

FOLDERS = sorted(p.name for p in CONFIGS.iterdir()
                 if p.is_dir() and p.name not in NOT_MODELS)


def config_files(folder):
    return sorted(p.name for p in (CONFIGS / folder).glob('*.py'))


def metafile(folder):
    with open(CONFIGS / folder / 'metafile.yml') as f:
        return yaml.safe_load(f)


def test_every_method_folder_is_found():
    # the folders the README's quick start and docs/table_configs.md name
    assert {'mona', 'adaptformer', 'lora', 'houlsby', 'lorand', 'full',
            'fixed', 'bitfit', 'normtuning', 'partial1', 'vit'} <= set(FOLDERS)


@pytest.mark.parametrize('folder', FOLDERS)
def test_folder_has_readme_and_metafile(folder):
    missing = [name for name in ('README.md', 'metafile.yml')
               if not (CONFIGS / folder / name).is_file()]
    assert not missing, f'configs/{folder} lacks {missing}'


@pytest.mark.parametrize('folder', FOLDERS)
def test_metafile_lists_every_config_and_each_exists(folder):
    meta = metafile(folder)
    collections = {c['Name'] for c in meta['Collections']}
    listed = []
    for model in meta['Models']:
        assert model['In Collection'] in collections, model['Name']
        assert (REPO / model['Config']).is_file(), model['Config']
        assert model['Config'].startswith(f'configs/{folder}/'), \
            model['Config']
        for key in ('Training Data', 'Training Resources', 'Architecture'):
            assert key in model['Metadata'], (model['Name'], key)
        # no weights are released: a Weights URL would point at nothing
        assert 'Weights' not in model, model['Name']
        for result in model['Results'] or []:
            # reported numbers are the paper's, and say so
            assert 'not reproduced' in result['Source'], model['Name']
        listed.append(Path(model['Config']).name)
    assert sorted(listed) == config_files(folder)
    names = [model['Name'] for model in meta['Models']]
    assert len(names) == len(set(names))


@pytest.mark.parametrize('folder', FOLDERS)
def test_readme_links_every_config(folder):
    text = (CONFIGS / folder / 'README.md').read_text()
    unlinked = [name for name in config_files(folder)
                if f'(./{name})' not in text]
    assert not unlinked, f'configs/{folder}/README.md does not link {unlinked}'
    assert '```bibtex' in text


def test_model_index_imports_every_metafile():
    with open(REPO / 'model-index.yml') as f:
        imports = yaml.safe_load(f)['Import']
    for path in imports:
        assert (REPO / path).is_file(), path
    assert sorted(imports) == [f'configs/{folder}/metafile.yml'
                               for folder in FOLDERS]
