import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';

const DEPLOY = path.resolve(__dirname, '..', '..', '..', 'deploy');

type Doc = Record<string, unknown>;
interface Container {
  name: string;
  command: string[];
  volumeMounts?: { name: string; mountPath: string }[];
  ports?: { name: string; containerPort: number }[];
}

/** Every document of a YAML file, parsed by PyYAML (Debian's python3-yaml): YAML, not what looks like it. */
function yamlDocuments(file: string): Doc[] {
  const json = execFileSync('/usr/bin/python3', ['-c', 'import json, sys, yaml; json.dump(list(yaml.safe_load_all(open(sys.argv[1]))), sys.stdout)', file], { encoding: 'utf8' });
  return JSON.parse(json) as Doc[];
}

const at = <T>(value: unknown, ...keys: string[]): T => keys.reduce<unknown>((v, k) => (v as Record<string, unknown>)[k], value) as T;

describe('deploy/kubernetes: the DaemonSet for a containerd node', () => {
  const docs = yamlDocuments(path.join(DEPLOY, 'kubernetes', 'snapfs.yaml'));
  const [namespace, configMap, daemonSet] = docs;

  it('is a namespace, containerd configuration and a DaemonSet, all of it YAML', () => {
    assert.deepEqual(
      docs.map((d) => d.kind),
      ['Namespace', 'ConfigMap', 'DaemonSet'],
    );
    for (const d of docs.slice(1)) assert.equal(at(d, 'metadata', 'namespace'), at(namespace, 'metadata', 'name'));
    assert.deepEqual(at(daemonSet, 'spec', 'selector', 'matchLabels'), at(daemonSet, 'spec', 'template', 'metadata', 'labels'));
  });

  it("points containerd at the socket serve listens on, and serves the metrics the pod's annotations name", () => {
    const toml = at<string>(configMap, 'data', 'snapfs.toml');
    const address = /address = "([^"]+)"/.exec(toml)?.[1];
    assert.ok(address, toml);
    const containers = at<Container[]>(daemonSet, 'spec', 'template', 'spec', 'containers');
    const serve = containers.find((c) => c.command.includes('serve'))!;
    assert.equal(serve.command[serve.command.indexOf('--address') + 1], address);
    const metrics = serve.command[serve.command.indexOf('--metrics-address') + 1]!;
    const port = at<Record<string, string>>(daemonSet, 'spec', 'template', 'metadata', 'annotations')['prometheus.io/port'];
    assert.equal(metrics, `:${port}`);
    assert.ok(serve.ports?.some((p) => String(p.containerPort) === port));
    assert.ok(containers.some((c) => c.command.join(' ') === 'snapfs daemon'), 'the mount daemon runs beside it');
  });

  it('mounts only volumes it declares, and shares the runtime directory between serve and the mount daemon', () => {
    const spec = at<{ containers: Container[]; initContainers: Container[]; volumes: { name: string }[] }>(daemonSet, 'spec', 'template', 'spec');
    const volumes = new Set(spec.volumes.map((v) => v.name));
    for (const c of [...spec.containers, ...spec.initContainers]) for (const m of c.volumeMounts ?? []) assert.ok(volumes.has(m.name), `${c.name}: ${m.name}`);
    for (const c of spec.containers) assert.ok(c.volumeMounts?.some((m) => m.mountPath === '/run/snapfs'), c.name);
  });
});

describe('deploy/systemd: the units', () => {
  it('run the installed snapfs', () => {
    const units = fs.readdirSync(path.join(DEPLOY, 'systemd')).filter((f) => f.endsWith('.service'));
    assert.ok(units.length > 0);
    for (const unit of units) assert.match(fs.readFileSync(path.join(DEPLOY, 'systemd', unit), 'utf8'), /^ExecStart=\/usr\/local\/bin\/snapfs /m, unit);
  });
});
