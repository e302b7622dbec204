//go:build e2e

package e2e

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/pki"
)

// TestDeployManifestsPassServerDryRun: what a user deploys (the base with
// hack/gen-certs.sh's certificates) is accepted by a real kube-apiserver.
func TestDeployManifestsPassServerDryRun(t *testing.T) {
	out := filepath.Join(env.Work, "deploy")
	gen := exec.Command(filepath.Join(env.Root, "hack/gen-certs.sh"), out)
	gen.Dir = env.Root
	if b, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("hack/gen-certs.sh: %v\n%s", err, b)
	}
	applied := ok(t, "admin", "apply", "--dry-run=server", "-k", out)
	for _, want := range []string{"deployment.apps/stargate-apiserver", "statefulset.apps/stargate-etcd",
		"apiservice.apiregistration.k8s.io/v1alpha1.stargate.io", "secret/stargate-serving-cert",
		"clusterrole.rbac.authorization.k8s.io/stargate-operator", "(server dry run)"} {
		if !strings.Contains(applied, want) {
			t.Errorf("dry run lacks %s:\n%s", want, applied)
		}
	}
	// The cert-manager overlay needs cert-manager's CRDs to apply; it must build.
	ok(t, "admin", "kustomize", filepath.Join(env.Root, "artifacts/deploy/overlays/cert-manager"))
}

// TestRestartMidJob: stargate-apiserver is killed (SIGKILL) while a repave
// runs. It comes back, the APIService is Available again, the Job finishes,
// and the datacenter ran it once.
func TestRestartMidJob(t *testing.T) {
	applySamples(t)
	objects := `apiVersion: stargate.io/v1alpha1
kind: Template
metadata: {name: os-2-0-0, namespace: dc-east}
spec: {osVersion: "2.0.0", osImage: "https://images.example.com/os-2.0.0.img"}
---
apiVersion: stargate.io/v1alpha1
kind: Hardware
metadata: {name: east-001, namespace: dc-east}
spec: {mac: "aa:bb:cc:dd:ff:01", ipv4: "10.0.2.5"}
---
apiVersion: stargate.io/v1alpha1
kind: Job
metadata: {name: repave-east-001, namespace: dc-east}
spec: {hardwareRef: {name: east-001}, templateRef: {name: os-2-0-0}, operation: repave}
`
	if out, err := env.KubectlIn("admin", objects, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	ok(t, "admin", "wait", "-n", "dc-east", "--for=jsonpath={.status.phase}=Running", "job.stargate.io/repave-east-001", "--timeout=60s")
	uid := ok(t, "admin", "get", "job.stargate.io", "-n", "dc-east", "repave-east-001", "-o", "jsonpath={.metadata.uid}")

	start := time.Now()
	if err := env.RestartStargate(); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed and back (APIService Available) in %s", time.Since(start).Round(time.Millisecond))
	ok(t, "admin", "wait", "-n", "dc-east", "--for=condition=Complete", "job.stargate.io/repave-east-001", "--timeout=90s")
	if out := ok(t, "admin", "get", "hardware", "-n", "dc-east", "east-001"); !strings.Contains(out, "2.0.0") {
		t.Errorf("the Hardware after the restart:\n%s", out)
	}
	// Nothing written before the kill is lost.
	if out := ok(t, "admin", "get", "template", "-n", "dc-east", "os-2-0-0", "-o", "name"); strings.TrimSpace(out) != "template.stargate.io/os-2-0-0" {
		t.Errorf("the Template after the restart: %s", out)
	}
	if n := ledgerCount(t, "dc-east", uid); n != 1 {
		t.Errorf("the Job executed %d times at dc-east, want 1", n)
	}
}

// ledgerCount reads a mock datacenter's ledger: how often a key was executed.
func ledgerCount(t *testing.T, dc, key string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, env.MockDC[dc]+"/debug/ledger", nil)
	req.Header.Set("Authorization", "Bearer "+env.Token(dc))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var ledger []struct {
		IdempotencyKey string `json:"idempotencyKey"`
	}
	if err := json.Unmarshal(body, &ledger); err != nil {
		t.Fatalf("ledger: %v: %s", err, body)
	}
	n := 0
	for _, e := range ledger {
		if e.IdempotencyKey == key {
			n++
		}
	}
	return n
}

// The production etcd (components/etcd-cluster, in overlays/production and
// overlays/production-cert-manager): what the sizing and the security of a
// million-server deployment rest on.
const (
	etcdStatefulSet = "stargate-etcd"
	etcdMembers     = 3
)

// TestProductionEtcdManifests: the production overlays are accepted by a real
// kube-apiserver (server-side dry run of every object it knows; cert-manager's
// are only built) and hold the properties the sizing and TLS depend on.
func TestProductionEtcdManifests(t *testing.T) {
	prod := buildProduction(t)
	dryRun(t, prod, "statefulset.apps/stargate-etcd", "service/stargate-etcd", "service/stargate-etcd-client",
		"poddisruptionbudget.policy/stargate-etcd", "cronjob.batch/stargate-etcd-defrag",
		"deployment.apps/stargate-apiserver", "secret/stargate-serving-cert", "apiservice.apiregistration.k8s.io/v1alpha1.stargate.io")
	withCM := build(t, filepath.Join(env.Root, "artifacts/deploy/overlays/production-cert-manager"))
	dryRun(t, withCM.without("cert-manager.io"), "statefulset.apps/stargate-etcd", "cronjob.batch/stargate-etcd-defrag")
	for _, name := range []string{"stargate-etcd-server", "stargate-etcd-peer", "stargate-etcd-client"} {
		if withCM.certificateFor(name) == nil {
			t.Errorf("overlays/production-cert-manager issues no Certificate for the Secret %s", name)
		}
	}

	for _, m := range []struct {
		name string
		objs manifests
	}{{"production", prod}, {"production-cert-manager", withCM}} {
		t.Run(m.name, func(t *testing.T) {
			checkNoInsecureTLS(t, m.objs)
			checkEtcdStatefulSet(t, m.objs)
			checkEtcdServicesAndBudget(t, m.objs)
			checkDefragJob(t, m.objs)
			checkStargateToEtcd(t, m.objs, build(t, filepath.Join(env.Root, "artifacts/deploy/base")))
		})
	}
}

// buildProduction builds what a user applies without cert-manager: the
// production overlay with hack/gencerts' serving certificate.
func buildProduction(t *testing.T) manifests {
	t.Helper()
	out := filepath.Join(env.Work, "deploy-production")
	gen := exec.Command("go", "run", "./hack/gencerts", "-base", "artifacts/deploy/overlays/production", "-out", out)
	gen.Dir = env.Root
	if b, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("hack/gencerts: %v\n%s", err, b)
	}
	return build(t, out)
}

// manifests are the objects of a kustomization, decoded.
type manifests []*unstructured.Unstructured

// build runs `kubectl kustomize dir` and decodes every object.
func build(t *testing.T, dir string) manifests {
	t.Helper()
	out := ok(t, "admin", "kustomize", dir)
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(out), 4096)
	var objs manifests
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decoding kubectl kustomize %s: %v", dir, err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
	return objs
}

// without drops the objects of an API group (one the test cluster lacks).
func (m manifests) without(group string) manifests {
	var kept manifests
	for _, u := range m {
		if u.GroupVersionKind().Group != group {
			kept = append(kept, u)
		}
	}
	return kept
}

// get decodes the object of that kind and name into a typed object.
func (m manifests) get(t *testing.T, kind, name string, into any) {
	t.Helper()
	for _, u := range m {
		if u.GetKind() == kind && u.GetName() == name {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
				t.Fatalf("%s %s: %v", kind, name, err)
			}
			return
		}
	}
	t.Fatalf("no %s %s in the build", kind, name)
}

// certificateFor is the spec of the cert-manager Certificate writing the Secret.
func (m manifests) certificateFor(secret string) map[string]any {
	for _, u := range m {
		if u.GroupVersionKind().Group == "cert-manager.io" && u.GetKind() == "Certificate" {
			if name, _, _ := unstructured.NestedString(u.Object, "spec", "secretName"); name == secret {
				spec, _, _ := unstructured.NestedMap(u.Object, "spec")
				return spec
			}
		}
	}
	return nil
}

// dryRun sends the objects to kube-apiserver with --dry-run=server, which
// validates each one as a create would, and checks the wanted ones were.
func dryRun(t *testing.T, objs manifests, want ...string) {
	t.Helper()
	var docs []string
	for _, u := range objs {
		b, err := json.Marshal(u.Object)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	out, err := env.KubectlIn("admin", strings.Join(docs, "\n"), "apply", "--dry-run=server", "-f", "-")
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server: %v\n%s", err, out)
	}
	if n := strings.Count(out, "(server dry run)"); n != len(objs) {
		t.Errorf("the dry run accepted %d objects of %d:\n%s", n, len(objs), out)
	}
	for _, w := range want {
		if !strings.Contains(out, w+" ") {
			t.Errorf("dry run lacks %s:\n%s", w, out)
		}
	}
}

// checkNoInsecureTLS: nothing turns certificate checks off.
func checkNoInsecureTLS(t *testing.T, objs manifests) {
	t.Helper()
	for _, u := range objs {
		b, _ := json.Marshal(u.Object)
		for _, bad := range []string{"insecureSkipTLSVerify", "insecure-skip-tls-verify", "--auto-tls", "--peer-auto-tls",
			"--peer-skip-client-san-verification", "--discovery-insecure"} {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s %s contains %s", u.GetKind(), u.GetName(), bad)
			}
		}
	}
}

// flagsOf parses --name=value arguments; a flag given twice is an error.
func flagsOf(t *testing.T, what string, args []string) map[string]string {
	t.Helper()
	flags := map[string]string{}
	for _, a := range args {
		name, value, found := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !found {
			continue
		}
		if _, dup := flags[name]; dup {
			t.Errorf("%s: --%s given twice", what, name)
		}
		flags[name] = value
	}
	return flags
}

// secretMounts maps each mount path of a container to the Secret mounted there.
func secretMounts(spec corev1.PodSpec, c corev1.Container) map[string]string {
	secrets := map[string]string{}
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			secrets[v.Name] = v.Secret.SecretName
		}
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		if s, ok := secrets[m.Name]; ok {
			mounts[m.MountPath] = s
		}
	}
	return mounts
}

// fromSecret is the Secret a file path is in, or "" if it is in none.
func fromSecret(mounts map[string]string, file string) string {
	for dir, secret := range mounts {
		if strings.HasPrefix(file, dir+"/") {
			return secret
		}
	}
	return ""
}

func container(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s", name)
	return corev1.Container{}
}

// portNumber is a probe's port as a number, resolving a container port's name.
func portNumber(c corev1.Container, port intstr.IntOrString) string {
	for _, cp := range c.Ports {
		if port.Type == intstr.String && cp.Name == port.StrVal {
			return strconv.Itoa(int(cp.ContainerPort))
		}
	}
	return port.String()
}

// memberHost is the DNS name of member i behind the headless Service.
func memberHost(i int) string {
	return fmt.Sprintf("%s-%d.%s.stargate-system.svc", etcdStatefulSet, i, etcdStatefulSet)
}

func checkEtcdStatefulSet(t *testing.T, objs manifests) {
	var sts appsv1.StatefulSet
	objs.get(t, "StatefulSet", etcdStatefulSet, &sts)
	if r := ptr.Deref(sts.Spec.Replicas, 0); r != etcdMembers {
		t.Errorf("etcd replicas %d, want %d", r, etcdMembers)
	}
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("podManagementPolicy %q: members must start together to reach quorum", sts.Spec.PodManagementPolicy)
	}
	checkAntiAffinity(t, sts)
	spec := sts.Spec.Template.Spec
	etcd := container(t, spec, "etcd")
	flags := flagsOf(t, "etcd", append(etcd.Command[1:], etcd.Args...))
	for _, f := range []string{"listen-client-urls", "advertise-client-urls", "listen-peer-urls", "initial-advertise-peer-urls"} {
		if !strings.HasPrefix(flags[f], "https://") || strings.Contains(flags[f], "http://") {
			t.Errorf("--%s=%q: want https only", f, flags[f])
		}
	}
	checkInitialCluster(t, flags["initial-cluster"])
	for _, f := range []string{"client-cert-auth", "peer-client-cert-auth"} {
		if flags[f] != "true" {
			t.Errorf("--%s=%q, want true", f, flags[f])
		}
	}
	mounts := secretMounts(spec, etcd)
	for _, f := range []string{"cert-file", "key-file", "trusted-ca-file", "peer-cert-file", "peer-key-file", "peer-trusted-ca-file"} {
		if fromSecret(mounts, flags[f]) == "" {
			t.Errorf("--%s=%q is not in a mounted Secret", f, flags[f])
		}
	}
	checkMetricsPort(t, flags, etcd)
	checkSizing(t, sts, etcd, flags)
}

func checkAntiAffinity(t *testing.T, sts appsv1.StatefulSet) {
	t.Helper()
	aff := sts.Spec.Template.Spec.Affinity
	if aff == nil || aff.PodAntiAffinity == nil || len(aff.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) == 0 {
		t.Errorf("no required pod anti-affinity: two members could share a node")
		return
	}
	term := aff.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0]
	sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
	if err != nil || term.TopologyKey != "kubernetes.io/hostname" || !sel.Matches(labels.Set(sts.Spec.Template.Labels)) {
		t.Errorf("anti-affinity %+v does not keep the members on different nodes", term)
	}
}

// checkInitialCluster: every member, by its stable name, over https.
func checkInitialCluster(t *testing.T, initial string) {
	t.Helper()
	var want []string
	for i := 0; i < etcdMembers; i++ {
		want = append(want, fmt.Sprintf("%s-%d=https://%s:2380", etcdStatefulSet, i, memberHost(i)))
	}
	if initial != strings.Join(want, ",") {
		t.Errorf("--initial-cluster=%s\nwant %s", initial, strings.Join(want, ","))
	}
}

// checkMetricsPort: the plain-HTTP listener (for the kubelet's probes, which
// cannot present a client certificate) is neither the client nor the peer port,
// and every probe goes there.
func checkMetricsPort(t *testing.T, flags map[string]string, etcd corev1.Container) {
	t.Helper()
	u, err := url.Parse(flags["listen-metrics-urls"])
	if err != nil || u.Port() == "" || u.Port() == "2379" || u.Port() == "2380" {
		t.Errorf("--listen-metrics-urls=%q: want a port of its own", flags["listen-metrics-urls"])
		return
	}
	for name, p := range map[string]*corev1.Probe{"startup": etcd.StartupProbe, "readiness": etcd.ReadinessProbe, "liveness": etcd.LivenessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("etcd has no HTTP %s probe", name)
			continue
		}
		if port := portNumber(etcd, p.HTTPGet.Port); port != u.Port() {
			t.Errorf("the %s probe goes to port %s, not the metrics port %s", name, port, u.Port())
		}
	}
}

// checkSizing: the quota is set, and both the memory limit (etcd maps its
// whole file) and the volume exceed it; compaction is stated.
func checkSizing(t *testing.T, sts appsv1.StatefulSet, etcd corev1.Container, flags map[string]string) {
	t.Helper()
	quota, err := strconv.ParseInt(flags["quota-backend-bytes"], 10, 64)
	if err != nil || quota <= 0 {
		t.Errorf("--quota-backend-bytes=%q: want a size in bytes", flags["quota-backend-bytes"])
		return
	}
	if limit, ok := etcd.Resources.Limits[corev1.ResourceMemory]; !ok || limit.Value() <= quota {
		t.Errorf("etcd memory limit %v is not above --quota-backend-bytes=%d", limit.String(), quota)
	}
	if req := etcd.Resources.Requests[corev1.ResourceMemory]; req.Value() <= quota {
		t.Errorf("etcd memory request %v is not above --quota-backend-bytes=%d: it could be scheduled where the file does not fit", req.String(), quota)
	}
	var disk int64
	for _, pvc := range sts.Spec.VolumeClaimTemplates {
		for _, m := range etcd.VolumeMounts {
			if m.Name == pvc.Name && strings.HasPrefix(flags["data-dir"], m.MountPath) {
				disk = pvc.Spec.Resources.Requests.Storage().Value()
			}
		}
	}
	if disk <= quota {
		t.Errorf("the volume holding --data-dir=%s requests %d bytes, not above --quota-backend-bytes=%d", flags["data-dir"], disk, quota)
	}
	if flags["auto-compaction-mode"] != "periodic" || flags["auto-compaction-retention"] == "" {
		t.Errorf("--auto-compaction-mode=%q --auto-compaction-retention=%q: want periodic with a retention",
			flags["auto-compaction-mode"], flags["auto-compaction-retention"])
	}
}

func checkEtcdServicesAndBudget(t *testing.T, objs manifests) {
	var sts appsv1.StatefulSet
	objs.get(t, "StatefulSet", etcdStatefulSet, &sts)
	pods := labels.Set(sts.Spec.Template.Labels)
	var peers, client corev1.Service
	objs.get(t, "Service", sts.Spec.ServiceName, &peers)
	if peers.Spec.ClusterIP != corev1.ClusterIPNone || !peers.Spec.PublishNotReadyAddresses {
		t.Errorf("Service %s: want headless and publishing not-ready members (peers find each other before quorum)", peers.Name)
	}
	objs.get(t, "Service", "stargate-etcd-client", &client)
	for _, s := range []corev1.Service{peers, client} {
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(pods) {
			t.Errorf("Service %s does not select the etcd pods", s.Name)
		}
	}
	var pdb policyv1.PodDisruptionBudget
	objs.get(t, "PodDisruptionBudget", etcdStatefulSet, &pdb)
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget maxUnavailable %v, want 1", pdb.Spec.MaxUnavailable)
	}
	if sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); err != nil || !sel.Matches(pods) {
		t.Errorf("PodDisruptionBudget does not select the etcd pods")
	}
}

// checkDefragJob: every member is defragmented, one per init container (so
// one at a time, stopping at the first failure), over TLS with a client
// certificate from a Secret.
func checkDefragJob(t *testing.T, objs manifests) {
	var cj batchv1.CronJob
	objs.get(t, "CronJob", "stargate-etcd-defrag", &cj)
	if cj.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
		t.Errorf("defrag concurrencyPolicy %q, want Forbid", cj.Spec.ConcurrencyPolicy)
	}
	spec := cj.Spec.JobTemplate.Spec.Template.Spec
	covered := map[string]bool{}
	for _, c := range spec.InitContainers {
		flags := flagsOf(t, c.Name, c.Command)
		if len(c.Command) < 2 || c.Command[0] != "etcdctl" || c.Command[1] != "defrag" {
			t.Errorf("init container %s runs %v, want etcdctl defrag", c.Name, c.Command)
			continue
		}
		if strings.Contains(flags["endpoints"], ",") || !strings.HasPrefix(flags["endpoints"], "https://") {
			t.Errorf("%s: --endpoints=%q, want one https endpoint", c.Name, flags["endpoints"])
		}
		covered[flags["endpoints"]] = true
		mounts := secretMounts(spec, c)
		for _, f := range []string{"cacert", "cert", "key"} {
			if fromSecret(mounts, flags[f]) == "" {
				t.Errorf("%s: --%s=%q is not in a mounted Secret", c.Name, f, flags[f])
			}
		}
	}
	for i := 0; i < etcdMembers; i++ {
		if ep := fmt.Sprintf("https://%s:2379", memberHost(i)); !covered[ep] {
			t.Errorf("no defrag of %s", ep)
		}
	}
}

// checkStargateToEtcd: stargate-apiserver reaches every member over https with
// the CA and its client certificate from a Secret, and keeps every other
// argument of the base.
func checkStargateToEtcd(t *testing.T, objs, base manifests) {
	var dep, baseDep appsv1.Deployment
	objs.get(t, "Deployment", "stargate-apiserver", &dep)
	base.get(t, "Deployment", "stargate-apiserver", &baseDep)
	spec := dep.Spec.Template.Spec
	c := container(t, spec, "stargate-apiserver")
	flags := flagsOf(t, "stargate-apiserver", c.Args)
	servers := strings.Split(flags["etcd-servers"], ",")
	if len(servers) != etcdMembers {
		t.Errorf("--etcd-servers=%s: want the %d members", flags["etcd-servers"], etcdMembers)
	}
	for i, s := range servers {
		if want := fmt.Sprintf("https://%s:2379", memberHost(i)); s != want {
			t.Errorf("--etcd-servers[%d]=%s, want %s", i, s, want)
		}
	}
	mounts := secretMounts(spec, c)
	for _, f := range []string{"etcd-cafile", "etcd-certfile", "etcd-keyfile"} {
		if fromSecret(mounts, flags[f]) == "" {
			t.Errorf("--%s=%q is not in a mounted Secret", f, flags[f])
		}
	}
	for _, a := range container(t, baseDep.Spec.Template.Spec, "stargate-apiserver").Args {
		if !strings.HasPrefix(a, "--etcd-servers=") && !slices.Contains(c.Args, a) {
			t.Errorf("the base's argument %s is lost in production", a)
		}
	}
	help, _ := exec.Command(env.Bin["stargate-apiserver"], "--help").CombinedOutput()
	for name := range flags {
		if !strings.Contains(string(help), "--"+name+" ") {
			t.Errorf("stargate-apiserver has no flag --%s", name)
		}
	}
}

// TestProductionEtcdRuns: the production StatefulSet's etcd command, run as
// it is written (etcd 3.7, every flag, addresses mapped to 127.0.0.1 and the
// mounted Secrets to certificates issued to the cert-manager Certificates'
// names and usages), forms a three-member cluster over TLS; it serves
// stargate-apiserver's and the defragmentation Job's client certificates,
// reports the quota it was given, defragments, and refuses a client without
// a certificate.
func TestProductionEtcdRuns(t *testing.T) {
	objs := build(t, filepath.Join(env.Root, "artifacts/deploy/overlays/production-cert-manager"))
	dir := filepath.Join(env.Work, "production-etcd")
	lc := &localCluster{objs: objs, secrets: issueEtcdSecrets(t, objs, filepath.Join(dir, "secrets")), ports: localPorts(t)}
	objs.get(t, "StatefulSet", etcdStatefulSet, &lc.sts)
	members := startMembers(t, lc.sts, lc.secrets, lc.ports, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	stargate := lc.stargateWritesAndSeesTheQuota(ctx, t)
	lc.defragJobDefragments(ctx, t)
	lc.etcdctlInThePodsWorks(ctx, t)
	refusesClientWithoutCertificate(ctx, t, stargate.Endpoints(), filepath.Join(lc.secrets["stargate-etcd-client"], "ca.crt"))
	for _, m := range members {
		if !m.running() {
			t.Errorf("etcd member %s exited:\n%s", m.name, m.logTail())
		}
	}
}

// localCluster is the production etcd of a build, running on 127.0.0.1.
type localCluster struct {
	objs           manifests
	sts            appsv1.StatefulSet
	secrets, ports map[string]string
}

// stargateWritesAndSeesTheQuota: stargate-apiserver's --etcd-* flags reach the
// cluster, whose every member reports the quota the manifest sets.
func (lc *localCluster) stargateWritesAndSeesTheQuota(ctx context.Context, t *testing.T) *clientv3.Client {
	t.Helper()
	var dep appsv1.Deployment
	lc.objs.get(t, "Deployment", "stargate-apiserver", &dep)
	f, _ := localized(t, dep.Spec.Template.Spec, "stargate-apiserver", 0, lc.ports, lc.secrets)
	stargate := tlsClient(t, "stargate-apiserver", f["etcd-servers"], f["etcd-cafile"], f["etcd-certfile"], f["etcd-keyfile"])
	if _, err := stargate.Put(ctx, "/registry/stargate.io/e2e-probe", "written over TLS"); err != nil {
		t.Fatalf("with stargate-apiserver's etcd flags: put: %v", err)
	}
	if resp, err := stargate.MemberList(ctx); err != nil || len(resp.Members) != etcdMembers {
		t.Fatalf("member list: %v, %v", resp, err)
	}
	etcd := container(t, lc.sts.Spec.Template.Spec, "etcd")
	quota := flagsOf(t, "etcd", append(etcd.Command[1:], etcd.Args...))["quota-backend-bytes"]
	for _, ep := range stargate.Endpoints() {
		st, err := stargate.Status(ctx, ep)
		if err != nil {
			t.Fatalf("status of %s: %v", ep, err)
		}
		if strconv.FormatInt(st.DbSizeQuota, 10) != quota {
			t.Errorf("%s reports a quota of %d bytes, the manifest sets %s", ep, st.DbSizeQuota, quota)
		}
	}
	return stargate
}

// defragJobDefragments: each init container of the CronJob defragments its
// member with its own endpoint and certificate flags.
func (lc *localCluster) defragJobDefragments(ctx context.Context, t *testing.T) {
	t.Helper()
	var cj batchv1.CronJob
	lc.objs.get(t, "CronJob", "stargate-etcd-defrag", &cj)
	spec := cj.Spec.JobTemplate.Spec.Template.Spec
	for _, c := range spec.InitContainers {
		f, _ := localized(t, spec, c.Name, 0, lc.ports, lc.secrets)
		defrag := tlsClient(t, c.Name, f["endpoints"], f["cacert"], f["cert"], f["key"])
		if _, err := defrag.Defragment(ctx, defrag.Endpoints()[0]); err != nil {
			t.Errorf("%s: defrag %s: %v", c.Name, defrag.Endpoints()[0], err)
		}
	}
}

// etcdctlInThePodsWorks: `kubectl exec stargate-etcd-N -- etcdctl ...`, as
// the README's NOSPACE procedure runs it, is configured by the container's
// ETCDCTL_* variables.
func (lc *localCluster) etcdctlInThePodsWorks(ctx context.Context, t *testing.T) {
	t.Helper()
	for i := 0; i < etcdMembers; i++ {
		_, e := localized(t, lc.sts.Spec.Template.Spec, "etcd", i, lc.ports, lc.secrets)
		etcdctl := tlsClient(t, "etcdctl in the etcd pod", e["ETCDCTL_ENDPOINTS"], e["ETCDCTL_CACERT"], e["ETCDCTL_CERT"], e["ETCDCTL_KEY"])
		if _, err := etcdctl.AlarmList(ctx); err != nil {
			t.Errorf("etcdctl in %s-%d: alarm list: %v", etcdStatefulSet, i, err)
		}
	}
}

// refusesClientWithoutCertificate: a client that trusts the CA but presents
// no certificate can neither connect nor read.
func refusesClientWithoutCertificate(ctx context.Context, t *testing.T, endpoints []string, caFile string) {
	t.Helper()
	tlsInfo := transport.TLSInfo{TrustedCAFile: caFile}
	tlsConfig, err := tlsInfo.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	anon, err := clientv3.New(clientv3.Config{Endpoints: endpoints, TLS: tlsConfig, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Logf("without a certificate: %v", err)
		return
	}
	defer anon.Close()
	short, stop := context.WithTimeout(ctx, 5*time.Second)
	defer stop()
	if _, err := anon.Get(short, "/registry/stargate.io/e2e-probe"); err == nil {
		t.Errorf("a client without a certificate read from etcd")
	} else {
		t.Logf("without a certificate: %v", err)
	}
}

// localPorts gives each member's container ports (client, peer, metrics) a
// free port on 127.0.0.1.
func localPorts(t *testing.T) map[string]string {
	t.Helper()
	ports := map[string]string{}
	for i := 0; i < etcdMembers; i++ {
		for _, p := range []string{"2379", "2380", "2381"} {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ports[fmt.Sprintf("%d:%s", i, p)] = strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
			l.Close()
		}
	}
	return ports
}

var urlInArg = regexp.MustCompile(`(https?)://([^:/,]+):(\d+)`)

// localArg rewrites one argument of member self for 127.0.0.1: $(POD_NAME),
// each URL's host (0.0.0.0, 127.0.0.1 or a member's name) and port, and each
// file under a mount to its local directory.
func localArg(t *testing.T, arg string, self int, ports map[string]string, mounts map[string]string) string {
	t.Helper()
	arg = strings.ReplaceAll(arg, "$(POD_NAME)", fmt.Sprintf("%s-%d", etcdStatefulSet, self))
	arg = urlInArg.ReplaceAllStringFunc(arg, func(u string) string {
		m := urlInArg.FindStringSubmatch(u)
		member := -1
		switch host := m[2]; host {
		case "0.0.0.0", "127.0.0.1", "localhost":
			member = self
		default:
			for i := 0; i < etcdMembers; i++ {
				if host == memberHost(i) {
					member = i
				}
			}
		}
		port, ok := ports[fmt.Sprintf("%d:%s", member, m[3])]
		if member < 0 || !ok {
			t.Fatalf("argument %q: %s is not a member's address", arg, u)
		}
		return m[1] + "://127.0.0.1:" + port
	})
	if name, value, found := strings.Cut(arg, "="); found {
		for dir, local := range mounts {
			if strings.HasPrefix(value, dir+"/") || value == dir {
				return name + "=" + local + strings.TrimPrefix(value, dir)
			}
		}
	}
	return arg
}

// localMounts maps a container's mount paths to local directories: Secrets
// to their issued certificates, anything else (the data volume) to a
// directory of its own under dir.
func localMounts(spec corev1.PodSpec, c corev1.Container, secrets map[string]string, dir string) map[string]string {
	local := map[string]string{}
	for path, secret := range secretMounts(spec, c) {
		local[path] = secrets[secret]
	}
	for _, m := range c.VolumeMounts {
		if _, ok := local[m.MountPath]; !ok {
			local[m.MountPath] = filepath.Join(dir, m.Name)
		}
	}
	return local
}

// localized is a container's flags and literal environment as they would be
// on member self of this machine (see localArg).
func localized(t *testing.T, spec corev1.PodSpec, name string, self int, ports, secrets map[string]string) (flags, envs map[string]string) {
	t.Helper()
	var c corev1.Container
	for _, each := range append(spec.InitContainers, spec.Containers...) {
		if each.Name == name {
			c = each
		}
	}
	if c.Name == "" {
		t.Fatalf("no container %s", name)
	}
	mounts := localMounts(spec, c, secrets, t.TempDir())
	var args []string
	for _, a := range append(c.Command, c.Args...) {
		args = append(args, localArg(t, a, self, ports, mounts))
	}
	envs = map[string]string{}
	for _, e := range c.Env {
		if e.Value != "" {
			k, v, _ := strings.Cut(localArg(t, e.Name+"="+e.Value, self, ports, mounts), "=")
			envs[k] = v
		}
	}
	return flagsOf(t, name, args), envs
}

// tlsClient is an etcd client with a CA, certificate and key (files).
func tlsClient(t *testing.T, who, endpoints, ca, cert, key string) *clientv3.Client {
	t.Helper()
	tlsInfo := transport.TLSInfo{TrustedCAFile: ca, CertFile: cert, KeyFile: key}
	tlsConfig, err := tlsInfo.ClientConfig()
	if err != nil {
		t.Fatalf("%s's TLS files: %v", who, err)
	}
	client, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(endpoints, ","), TLS: tlsConfig,
		DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("%s's etcd client: %v", who, err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// issueEtcdSecrets issues, from a CA of the test's, a certificate for each
// cert-manager Certificate of the etcd Secrets, with its names, IP addresses
// and usages (and 127.0.0.1 for a certificate that has names, since here
// every member is on 127.0.0.1), into dir/<secret>/{tls.crt,tls.key,ca.crt}.
func issueEtcdSecrets(t *testing.T, objs manifests, dir string) map[string]string {
	t.Helper()
	ca, err := pki.EnsureCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), "e2e-etcd-ca")
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{}
	for _, name := range []string{"stargate-etcd-server", "stargate-etcd-peer", "stargate-etcd-client"} {
		spec := objs.certificateFor(name)
		if spec == nil {
			t.Fatalf("no Certificate for %s", name)
		}
		tmpl := certificateTemplate(t, spec)
		secrets[name] = filepath.Join(dir, name)
		if err := os.MkdirAll(secrets[name], 0o700); err != nil {
			t.Fatal(err)
		}
		if err := ca.EnsureLeaf(filepath.Join(secrets[name], "tls.crt"), filepath.Join(secrets[name], "tls.key"), tmpl); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(secrets[name], "ca.crt"), caPEM, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return secrets
}

// certificateTemplate is what cert-manager would issue for a Certificate spec.
func certificateTemplate(t *testing.T, spec map[string]any) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{}
	tmpl.Subject.CommonName, _, _ = unstructured.NestedString(spec, "commonName")
	tmpl.DNSNames, _, _ = unstructured.NestedStringSlice(spec, "dnsNames")
	ips, _, _ := unstructured.NestedStringSlice(spec, "ipAddresses")
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	if len(tmpl.DNSNames) > 0 && !slices.Contains(ips, "127.0.0.1") {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IPv4(127, 0, 0, 1))
	}
	usages, _, _ := unstructured.NestedStringSlice(spec, "usages")
	for _, u := range usages {
		switch u {
		case "server auth":
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		case "client auth":
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
		}
	}
	return tmpl
}

// etcdMember is one etcd process of TestProductionEtcdRuns.
type etcdMember struct {
	name, log string
	cmd       *exec.Cmd
	done      chan struct{}
}

func (m *etcdMember) running() bool {
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

func (m *etcdMember) logTail() string {
	b, _ := os.ReadFile(m.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// startMembers runs the StatefulSet's etcd command once per member and waits
// until each answers /readyz (a linearizable read: the cluster has a quorum)
// on the URL its probes use.
func startMembers(t *testing.T, sts appsv1.StatefulSet, secrets, ports map[string]string, dir string) []*etcdMember {
	t.Helper()
	spec := sts.Spec.Template.Spec
	etcd := container(t, spec, "etcd")
	var members []*etcdMember
	for i := 0; i < etcdMembers; i++ {
		m := &etcdMember{name: fmt.Sprintf("%s-%d", etcdStatefulSet, i), log: filepath.Join(dir, fmt.Sprintf("etcd-%d.log", i)),
			done: make(chan struct{})}
		mounts := localMounts(spec, etcd, secrets, filepath.Join(dir, m.name))
		var args []string
		for _, a := range append(etcd.Command[1:], etcd.Args...) {
			args = append(args, localArg(t, a, i, ports, mounts))
		}
		logFile, err := os.Create(m.log)
		if err != nil {
			t.Fatal(err)
		}
		m.cmd = exec.Command(env.Bin["etcd"], args...)
		// etcd reads ETCD_* variables as flags: run with the container's.
		m.cmd.Env = []string{"HOME=" + dir, "POD_NAME=" + m.name}
		for _, e := range etcd.Env {
			if e.Value != "" {
				m.cmd.Env = append(m.cmd.Env, localArg(t, e.Name+"="+e.Value, i, ports, mounts))
			}
		}
		m.cmd.Stdout, m.cmd.Stderr = logFile, logFile
		if err := m.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = m.cmd.Wait(); logFile.Close(); close(m.done) }()
		t.Cleanup(func() { _ = m.cmd.Process.Kill(); <-m.done })
		members = append(members, m)
	}
	probe := etcd.ReadinessProbe.HTTPGet
	probePort := portNumber(etcd, probe.Port)
	for i, m := range members {
		readyz := fmt.Sprintf("http://127.0.0.1:%s%s", ports[fmt.Sprintf("%d:%s", i, probePort)], probe.Path)
		deadline := time.Now().Add(time.Minute)
		for {
			resp, err := http.Get(readyz)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if !m.running() || time.Now().After(deadline) {
				t.Fatalf("etcd member %s not ready (%v):\n%s", m.name, err, m.logTail())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return members
}
