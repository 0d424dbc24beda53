# Ways around the conda policy, each on the rig's real conda image (rig/conda-evasion-images.sh
# builds every stage as hardened-spawner/conda-evade-<stage>:test). Each one was admitted by a
# policy that denies pycrypto, pins the lock file and enforces conda.pip-pollution, until the
# Python import rules and the search for conda prefixes outside /opt/conda (issue 23).
ARG REAL=hardened-spawner/conda-real:test
ARG ENVS=hardened-spawner/conda-realenvs:test
FROM ${ENVS} AS envs

# the denied package as a bare import directory: no dist-info, no conda record
FROM ${REAL} AS bare
COPY --from=envs /opt/conda/envs/crypto/lib/python3.11/site-packages/Crypto/ /opt/conda/lib/python3.11/site-packages/Crypto/

# the bare Crypto/ claimed by a record: its name added to tornado's `files` (the record's hashes kept, so the
# channel still lists it)
FROM bare AS claimedfiles
USER root
RUN python3 -c "import glob, json; p = glob.glob('/opt/conda/conda-meta/tornado-*.json')[0]; r = json.load(open(p)); \
r['files'].append('lib/python3.11/site-packages/Crypto/__init__.py'); json.dump(r, open(p, 'w'))"
USER 1000:100

# a .pth file no record owns: Python runs it at every start-up
FROM ${REAL} AS pth
USER root
RUN printf 'import sys; sys.stderr.write("evasion.pth ran\\n")\n' > /opt/conda/lib/python3.11/site-packages/evasion.pth
USER 1000:100

# a second conda prefix outside <prefix>/envs, holding the denied package
FROM ${REAL} AS prefix
COPY --from=envs /opt/conda/envs/crypto/ /opt/other/

# PYTHONPATH shadowing a package the lock file pins
FROM ${REAL} AS shadow
USER root
RUN mkdir -p /opt/shadow/tornado && printf 'version = "shadowed"\n' > /opt/shadow/tornado/__init__.py
USER 1000:100
ENV PYTHONPATH=/opt/shadow

# the interpreter's and the loader's other import variables
FROM ${REAL} AS loaderenv
ENV PYTHONSTARTUP=/opt/startup.py PYTHONHOME=/opt/conda LD_PRELOAD=/opt/preload.so LD_LIBRARY_PATH=/opt/lib

# a user site in the image's home: imported before site-packages, copied into a new home volume
FROM ${REAL} AS usersite
USER root
RUN mkdir -p /home/jovyan/.local/lib/python3.11/site-packages \
 && printf 'version = "user site"\n' > /home/jovyan/.local/lib/python3.11/site-packages/usersite_evasion.py \
 && chown -R 1000:100 /home/jovyan/.local
USER 1000:100

# a record copied from another channel, edited to name the approved one (channel, url)
FROM ${REAL} AS forgedchannel
COPY --from=envs /opt/conda/envs/vendor/conda-meta/ /tmp/vendor-meta/
USER root
RUN for f in /tmp/vendor-meta/hs-telemetry-*.json; do \
        sed 's#/evil-channel#/conda-forge#g' "$f" > "/opt/conda/conda-meta/$(basename "$f")"; done \
 && rm -rf /tmp/vendor-meta
USER 1000:100

# a record of the approved channel with another package's sha256 (md5 kept, as the lock file checks md5)
FROM ${REAL} AS forgedhash
USER root
RUN python3 -c "import glob, json; p = glob.glob('/opt/conda/conda-meta/six-*.json')[0]; r = json.load(open(p)); \
r['sha256'] = 'f' * 64; json.dump(r, open(p, 'w'))"
USER 1000:100

# a package patched after install: its record, the lock file and the channel still say the original
FROM ${REAL} AS modified
USER root
RUN printf 'version = "patched"\n' >> /opt/conda/lib/python3.11/site-packages/tornado/__init__.py
USER 1000:100

# a compiled extension patched after install (bytes appended: the loader still maps it, `import` still works)
FROM ${REAL} AS modifiedext
USER root
RUN printf 'patched' >> /opt/conda/lib/python3.11/site-packages/tornado/speedups.abi3.so
USER 1000:100

# the notebook's entry point (a console script in bin/, outside site-packages) patched after install
FROM ${REAL} AS modifiedscript
USER root
RUN sed -i '2i echo patched >&2' /opt/conda/bin/jupyterhub-singleuser
USER 1000:100

# the patched file moved out of the package and linked back: Python follows the link, the layers cannot hash it
FROM ${REAL} AS relinked
USER root
RUN f=/opt/conda/lib/python3.11/site-packages/tornado/__init__.py && mv "$f" /opt/tornado-init.py \
 && printf 'version = "relinked"\n' >> /opt/tornado-init.py && ln -s /opt/tornado-init.py "$f"
USER 1000:100

# the package patched and its record's paths_data edited to the patched file's sha256: only the package's own
# info/paths.json on the channel still says the original
FROM ${REAL} AS forgedpaths
USER root
RUN python3 -c "import glob, hashlib, json; f = '/opt/conda/lib/python3.11/site-packages/tornado/__init__.py'; \
open(f, 'a').write('version = \"forged\"\n'); p = glob.glob('/opt/conda/conda-meta/tornado-*.json')[0]; \
r = json.load(open(p)); [e.update(sha256=hashlib.sha256(open(f, 'rb').read()).hexdigest()) \
for e in r['paths_data']['paths'] if e['_path'].endswith('tornado/__init__.py')]; json.dump(r, open(p, 'w'))"
USER 1000:100

# inside a package a record owns (issue 23, nested): Python's FileFinder takes a package directory, then an
# extension module, before the package's own tornado/web.py
FROM ${REAL} AS nestedpkg
USER root
RUN mkdir /opt/conda/lib/python3.11/site-packages/tornado/web \
 && printf 'import sys; sys.stderr.write("nested package ran\\n")\n' > /opt/conda/lib/python3.11/site-packages/tornado/web/__init__.py
USER 1000:100

# a real shared object (built on the host by rig/conda-evasion-images.sh: its constructor runs when Python maps it)
FROM ${REAL} AS nestedext
COPY web.abi3.so /opt/conda/lib/python3.11/site-packages/tornado/web.abi3.so

# a crafted bytecode file for the package's own web.py: an unchecked-hash pyc, which Python loads without
# looking at the source
FROM ${REAL} AS nestedpyc
USER root
RUN d=/opt/conda/lib/python3.11/site-packages/tornado && printf 'import sys; sys.stderr.write("crafted pyc ran\\n")\n' \
    > /tmp/web.py && /opt/conda/bin/python -c "import py_compile as p; p.compile('/tmp/web.py', \
'$d/__pycache__/web.cpython-311.pyc', invalidation_mode=p.PycInvalidationMode.UNCHECKED_HASH, doraise=True)" \
 && rm /tmp/web.py && chmod -R a+rX "$d/__pycache__"
USER 1000:100
