"Packaging for miniai: everything is read from settings.ini (nbdev's convention)."
from configparser import ConfigParser
import setuptools, shlex

cfg = ConfigParser(delimiters=['='])
cfg.read('settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']
for k in 'version description keywords author author_email license lib_name user min_python'.split():
    assert k in cfg, f'settings.ini is missing `{k}`'

licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
lic = licenses[cfg['license']]
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']
reqs = shlex.split(cfg.get('requirements', ''))
dev_reqs = shlex.split(cfg.get('dev_requirements', ''))
scripts = [s.strip() for s in cfg.get('console_scripts', '').split('\n') if s.strip()]

setuptools.setup(
    name=cfg['lib_name'], version=cfg['version'], license=lic[0],
    description=cfg['description'], keywords=cfg['keywords'],
    author=cfg['author'], author_email=cfg['author_email'],
    url=cfg['git_url'], packages=setuptools.find_packages(include=['miniai', 'miniai.*']),
    include_package_data=True, install_requires=reqs, extras_require={'dev': dev_reqs},
    python_requires='>=' + cfg['min_python'], zip_safe=False,
    long_description=open('README.md', encoding='utf-8').read(), long_description_content_type='text/markdown',
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])], 'Intended Audience :: ' + cfg['audience'].title(),
                 'License :: ' + lic[1], 'Natural Language :: ' + cfg['language'].title(),
                 'Programming Language :: Python :: ' + cfg['min_python']],
    entry_points={'console_scripts': scripts, 'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
)
