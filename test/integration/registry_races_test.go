package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/client-go/rest"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/cmd/server"
	"stargate.io/stargate/pkg/embeddedetcd"
	clientset "stargate.io/stargate/pkg/generated/clientset/versioned"
)

// startServerWithAdmission runs a standalone server, as startServer does,
// whose generic configuration carries admit as its admission chain (what
// --enable-admission-plugins and webhooks give an aggregated server), and
// returns it with a client authenticated as user alice of system:masters.
func startServerWithAdmission(t *testing.T, admit admission.Interface) *testServer {
	t.Helper()
	dataDir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := server.NewOptions(os.Stdout, os.Stderr)
	o.Standalone, o.DataDir, o.Controllers = true, dataDir, false
	o.RecommendedOptions.SecureServing.Listener = ln
	o.RecommendedOptions.SecureServing.BindAddress = net.ParseIP("127.0.0.1")
	o.RecommendedOptions.SecureServing.BindPort = ln.Addr().(*net.TCPAddr).Port
	if err := o.Complete(); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	etcd, err := embeddedetcd.Start(filepath.Join(dataDir, "etcd"), 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Close)
	o.RecommendedOptions.Etcd.StorageConfig.Transport.ServerList = []string{etcd.ClientURL}
	config, err := o.Config()
	if err != nil {
		t.Fatal(err)
	}
	config.GenericConfig.AdmissionControl = admit
	etcdClient, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.ClientURL}, DialTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { etcdClient.Close() })
	config.ExtraConfig.EtcdClient = etcdClient
	config.ExtraConfig.EtcdPrefix = o.RecommendedOptions.Etcd.StorageConfig.Prefix
	s, err := config.Complete().New()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.GenericAPIServer.PrepareRun().RunWithContext(ctx) }()
	ts := &testServer{DataDir: dataDir, EtcdURL: etcd.ClientURL}
	var once sync.Once
	ts.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, context.Canceled) {
					t.Errorf("server ended with %v", err)
				}
			case <-time.After(time.Minute):
				t.Error("server did not stop within a minute")
			}
		})
	}
	t.Cleanup(ts.stop) // runs before the etcd cleanups above

	certFile, keyFile := issueClientCert(t, dataDir, "alice", server.MastersGroup)
	ts.Config = &rest.Config{Host: "https://" + ln.Addr().String(), QPS: -1, TLSClientConfig: rest.TLSClientConfig{
		CAFile: filepath.Join(dataDir, "pki", "ca.crt"), CertFile: certFile, KeyFile: keyFile}}
	ts.Client = clientset.NewForConfigOrDie(ts.Config)
	ts.waitReady(t)
	return ts
}

// admitted is what an admission plugin saw of one call.
type admitted struct {
	Phase                         string // "mutating" or "validating"
	Operation                     admission.Operation
	Resource, Kind, Subresource   string
	Namespace, User               string
	DryRun                        bool
	FieldManager, HardwareName    string
	SawMutation                   bool
	ObjectIsJob, OptionsAreCreate bool
}

// jobPolicy is an in-process admission plugin on Job creation: the mutating
// half labels every Job; the validating half refuses Jobs that install the
// Template "os-forbidden". It records every call on jobs.
type jobPolicy struct {
	mu   sync.Mutex
	seen []admitted
}

const (
	policyLabel   = "policy.example.com/admitted"
	forbiddenOS   = "os-forbidden"
	policyMessage = "the fleet policy forbids installing os-forbidden"
)

var (
	_ admission.MutationInterface   = &jobPolicy{}
	_ admission.ValidationInterface = &jobPolicy{}
)

func (p *jobPolicy) Handles(op admission.Operation) bool { return op == admission.Create }

func (p *jobPolicy) record(phase string, a admission.Attributes) *stargate.Job {
	if a.GetResource().GroupResource() != stargate.Resource("jobs") {
		return nil
	}
	job, _ := a.GetObject().(*stargate.Job)
	opts, isCreate := a.GetOperationOptions().(*metav1.CreateOptions)
	r := admitted{Phase: phase, Operation: a.GetOperation(), Resource: a.GetResource().String(), Kind: a.GetKind().String(),
		Subresource: a.GetSubresource(), Namespace: a.GetNamespace(), DryRun: a.IsDryRun(),
		ObjectIsJob: job != nil, OptionsAreCreate: isCreate}
	if a.GetUserInfo() != nil {
		r.User = a.GetUserInfo().GetName()
	}
	if isCreate {
		r.FieldManager = opts.FieldManager
	}
	if job != nil {
		r.HardwareName = job.Spec.HardwareRef.Name
		r.SawMutation = job.Labels[policyLabel] == "true"
	}
	p.mu.Lock()
	p.seen = append(p.seen, r)
	p.mu.Unlock()
	return job
}

func (p *jobPolicy) Admit(ctx context.Context, a admission.Attributes, o admission.ObjectInterfaces) error {
	if job := p.record("mutating", a); job != nil {
		if job.Labels == nil {
			job.Labels = map[string]string{}
		}
		job.Labels[policyLabel] = "true"
	}
	return nil
}

func (p *jobPolicy) Validate(ctx context.Context, a admission.Attributes, o admission.ObjectInterfaces) error {
	job := p.record("validating", a)
	if job != nil && job.Spec.TemplateRef != nil && job.Spec.TemplateRef.Name == forbiddenOS {
		return apierrors.NewForbidden(a.GetResource().GroupResource(), a.GetName(), errors.New(policyMessage))
	}
	return nil
}

// calls returns, and forgets, what the plugin saw.
func (p *jobPolicy) calls() []admitted {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := p.seen
	p.seen = nil
	return seen
}

// TestRepaveIsAdmittedLikeAJobCreate: the Job /repave creates goes through
// the server's mutating and validating admission as a create of
// stargate.io/v1alpha1 jobs, with the Job, the requesting user, dry-run and
// field manager, exactly as a Job created directly: a policy that refuses it
// refuses the /repave request with its own error and code, and a mutation
// shows on the stored Job that /repave's answer names.
func TestRepaveIsAdmittedLikeAJobCreate(t *testing.T) {
	policy := &jobPolicy{}
	ts := startServerWithAdmission(t, policy)
	seedInventory(t, ts.Client)
	ctx := context.Background()
	c := ts.Client.StargateV1alpha1()
	if _, err := c.Hardwares(ns).Create(ctx, hardware("server-002", "aa:bb:cc:dd:ee:02", "10.0.1.6"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Templates(ns).Create(ctx, &v1alpha1.Template{
		ObjectMeta: metav1.ObjectMeta{Name: forbiddenOS, Namespace: ns},
		Spec:       v1alpha1.TemplateSpec{OSVersion: "6.6.6", OSImage: "https://images.example.com/forbidden.img"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	repave := func(template string, opts metav1.CreateOptions) (*v1alpha1.RepaveRequest, error) {
		return c.Hardwares(ns).Repave(ctx, "server-001", &v1alpha1.RepaveRequest{Spec: v1alpha1.RepaveRequestSpec{
			TemplateRef: v1alpha1.LocalObjectReference{Name: template}}}, opts)
	}
	policy.calls()

	// Refused by the validating policy: its error and code, nothing stored, no lock left.
	_, err := repave(forbiddenOS, metav1.CreateOptions{FieldManager: "repaver"})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), policyMessage) {
		t.Fatalf("/repave of a Job the policy forbids: %v, want 403 with %q", err, policyMessage)
	}
	if jobs, _ := c.Jobs(ns).List(ctx, metav1.ListOptions{}); len(jobs.Items) != 0 {
		t.Fatalf("a refused /repave stored %d Jobs", len(jobs.Items))
	}
	refusedRepave := policy.calls()
	_, err = c.Jobs(ns).Create(ctx, repaveJobFor("direct-forbidden", "server-002", forbiddenOS), metav1.CreateOptions{FieldManager: "repaver"})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), policyMessage) {
		t.Fatalf("kubectl create of a Job the policy forbids: %v, want 403 with %q", err, policyMessage)
	}
	refusedCreate := policy.calls()

	// A dry run is admitted as a dry run.
	if _, err := repave("os-2-0-0", metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldManager: "repaver"}); err != nil {
		t.Fatal(err)
	}
	dryRepave := policy.calls()
	if _, err := c.Jobs(ns).Create(ctx, repaveJobFor("direct-dry", "server-002", "os-2-0-0"),
		metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldManager: "repaver"}); err != nil {
		t.Fatal(err)
	}
	dryCreate := policy.calls()

	// Admitted and mutated.
	answer, err := repave("os-2-0-0", metav1.CreateOptions{FieldManager: "repaver"})
	if err != nil {
		t.Fatal(err)
	}
	viaRepave := policy.calls()
	if answer.Status.Job == nil {
		t.Fatalf("/repave answered no status.job: %+v", answer)
	}
	if stored, err := c.Jobs(ns).Get(ctx, answer.Status.Job.Name, metav1.GetOptions{}); err != nil || stored.Labels[policyLabel] != "true" {
		t.Errorf("the stored /repave Job lacks the mutating policy's label: %v %+v", err, stored)
	}
	if _, err := c.Jobs(ns).Create(ctx, repaveJobFor("direct", "server-002", "os-2-0-0"), metav1.CreateOptions{FieldManager: "repaver"}); err != nil {
		t.Fatal(err)
	}
	direct := policy.calls()

	want := func(dryRun bool, hw string) []admitted {
		a := admitted{Operation: admission.Create, Resource: "stargate.io/v1alpha1, Resource=jobs", Kind: "stargate.io/v1alpha1, Kind=Job",
			Namespace: ns, User: "alice", DryRun: dryRun, FieldManager: "repaver", HardwareName: hw,
			ObjectIsJob: true, OptionsAreCreate: true}
		m, v := a, a
		m.Phase, v.Phase, v.SawMutation = "mutating", "validating", true
		return []admitted{m, v}
	}
	for _, tc := range []struct {
		name string
		got  []admitted
		want []admitted
	}{
		{"refused /repave", refusedRepave, want(false, "server-001")},
		{"refused kubectl create", refusedCreate, want(false, "server-002")},
		{"dry-run /repave", dryRepave, want(true, "server-001")},
		{"dry-run kubectl create", dryCreate, want(true, "server-002")},
		{"/repave", viaRepave, want(false, "server-001")},
		{"kubectl create", direct, want(false, "server-002")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if fmt.Sprintf("%+v", tc.got) != fmt.Sprintf("%+v", tc.want) {
				t.Errorf("admission saw\n%+v\nwant\n%+v", tc.got, tc.want)
			}
		})
	}
}

func repaveJobFor(name, hw, template string) *v1alpha1.Job {
	j := repaveJob(name)
	j.Spec.HardwareRef.Name = hw
	j.Spec.TemplateRef.Name = template
	return j
}

// TestDatacenterDeleteRefusedWhileJobsAreUnfinished: deleting a Datacenter
// whose namespace still has an unfinished Job gets 409 naming the Job; once
// the Job is gone, the delete goes through.
func TestDatacenterDeleteRefusedWhileJobsAreUnfinished(t *testing.T) {
	ts := startServer(t, "")
	seedInventory(t, ts.Client)
	createDatacenter(t, ts, ns, "https://dc-west.example")
	createDatacenter(t, ts, "dc-east", "https://dc-east.example")
	ctx := context.Background()
	c := ts.Client.StargateV1alpha1()
	if _, err := c.Jobs(ns).Create(ctx, repaveJob("busy"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := c.Datacenters().Delete(ctx, ns, metav1.DeleteOptions{})
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("deleting a Datacenter with an unfinished Job: %v, want 409 naming Job busy", err)
	}
	if _, err := c.Datacenters().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		t.Fatalf("the refused delete lost the Datacenter: %v", err)
	}
	if err := c.Datacenters().Delete(ctx, "dc-east", metav1.DeleteOptions{}); err != nil {
		t.Errorf("a Datacenter without Jobs: %v", err)
	}
	if err := c.Jobs(ns).Delete(ctx, "busy", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := c.Jobs(ns).Get(ctx, "busy", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil // a deletion finalizer may hold it a moment
	})
	if err != nil {
		t.Fatalf("Job busy was not deleted: %v", err)
	}
	if err := c.Datacenters().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Errorf("a Datacenter whose Jobs are gone: %v", err)
	}
}
