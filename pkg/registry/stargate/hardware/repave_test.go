package hardware

import (
	"context"
	"net/http"
	"strings"
	"testing"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/admission"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/registry/stargate/job"
	"stargate.io/stargate/pkg/registry/stargate/joblock"
	"stargate.io/stargate/pkg/registry/stargate/registrytest"
	"stargate.io/stargate/pkg/registry/stargate/template"
)

type repaveEnv struct {
	repave *RepaveREST
	hw     *Storage
	jobs   *job.Storage
	ctx    context.Context
}

func newRepaveEnv(t *testing.T) *repaveEnv { return newRepaveEnvAdmitting(t, nil) }

// newRepaveEnvAdmitting is newRepaveEnv with admit as the server's admission chain.
func newRepaveEnvAdmitting(t *testing.T, admit admission.Interface) *repaveEnv {
	scheme := registrytest.Scheme()
	opts := registrytest.RESTOptionsGetter(t, scheme)
	hw, err := NewStorage(scheme, opts)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := template.NewREST(scheme, opts)
	if err != nil {
		t.Fatal(err)
	}
	// The Job store carries the Hardware lock, as in the server.
	jobs, err := job.NewStorage(scheme, opts, joblock.New(hw.Status, tmpl, clock.RealClock{}, joblock.DefaultGrace).Install)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hw.Hardware.DestroyFunc(); tmpl.DestroyFunc(); jobs.Job.DestroyFunc() })
	ctx := genericapirequest.WithNamespace(context.Background(), "test")
	if _, err := hw.Hardware.Create(ctx, validHardware(), nil, &metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := tmpl.Create(ctx, &stargate.Template{
		ObjectMeta: metav1.ObjectMeta{Name: "os-2-0-0", Namespace: "test"},
		Spec:       stargate.TemplateSpec{OSVersion: "2.0.0", OSImage: "https://images.example.com/os.img"},
	}, nil, &metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return &repaveEnv{repave: NewRepaveREST(hw.Hardware, tmpl, jobs.Job, admit, ObjectInterfaces(scheme, runtime.NewEquivalentResourceRegistry())),
		hw: hw, jobs: jobs, ctx: ctx}
}

func repaveRequest(template string) *stargate.RepaveRequest {
	return &stargate.RepaveRequest{Spec: stargate.RepaveRequestSpec{
		TemplateRef: stargate.LocalObjectReference{Name: template}, ActiveDeadlineSeconds: ptr.To[int64](3600)}}
}

func (e *repaveEnv) jobCount(t *testing.T) int {
	list, err := e.jobs.Job.List(e.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	return len(list.(*stargate.JobList).Items)
}

// repaveAnswer is the RepaveRequest /repave answered with, after checking
// that it is one and that its status names a Job.
func repaveAnswer(t *testing.T, obj runtime.Object) *stargate.RepaveRequest {
	t.Helper()
	answer, ok := obj.(*stargate.RepaveRequest)
	if !ok {
		t.Fatalf("/repave answered %T, want the RepaveRequest", obj)
	}
	if answer.Status.Job == nil || !strings.HasPrefix(answer.Status.Job.Name, "server-001-repave-") {
		t.Fatalf("status.job = %+v, want the generated name of server-001's Job", answer.Status.Job)
	}
	return answer
}

func TestRepaveCreatesTheJob(t *testing.T) {
	e := newRepaveEnv(t)
	sent := repaveRequest("os-2-0-0")
	obj, err := e.repave.Create(e.ctx, "server-001", sent, nil, &metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	answer := repaveAnswer(t, obj)
	want := repaveRequest("os-2-0-0").Spec
	want.BackoffLimit = ptr.To[int32](3) // defaulted, as the Job's
	if !apiequality.Semantic.DeepEqual(answer.Spec, want) {
		t.Errorf("answer's spec %+v, want %+v", answer.Spec, want)
	}
	if sent.Spec.BackoffLimit != nil || sent.Status.Job != nil {
		t.Errorf("Create changed the body it was given: %+v", sent)
	}

	stored, err := e.jobs.Job.Get(e.ctx, answer.Status.Job.Name, &metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the Job named in status.job: %v", err)
	}
	j := stored.(*stargate.Job)
	if j.UID == "" || j.UID != answer.Status.Job.UID {
		t.Errorf("status.job.uid %q, the Job's %q", answer.Status.Job.UID, j.UID)
	}
	if j.Labels[HardwareLabel] != "server-001" ||
		j.Spec.Operation != stargate.OperationRepave || j.Spec.TemplateRef.Name != "os-2-0-0" ||
		j.Spec.HardwareRef.Name != "server-001" || *j.Spec.BackoffLimit != 3 || *j.Spec.ActiveDeadlineSeconds != 3600 ||
		j.Status.Phase != stargate.JobPending {
		t.Errorf("job %+v", j)
	}
	if n := e.jobCount(t); n != 1 {
		t.Errorf("%d jobs stored, want 1", n)
	}
}

// TestRepaveKeepsTheSpecSent: a backoffLimit sent is answered and passed on
// as sent, a status sent is replaced by the Job made, and the managed fields
// the handler recorded are not answered (the request is never stored).
func TestRepaveKeepsTheSpecSent(t *testing.T) {
	e := newRepaveEnv(t)
	sent := repaveRequest("os-2-0-0")
	sent.Spec.BackoffLimit = ptr.To[int32](0)
	sent.Spec.TTLSecondsAfterFinished = ptr.To[int32](60)
	sent.Status.Job = &stargate.JobReference{Name: "made-up", UID: "made-up"}
	sent.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationUpdate, Subresource: "repave"}}
	obj, err := e.repave.Create(e.ctx, "server-001", sent, nil, &metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	answer := repaveAnswer(t, obj)
	if !apiequality.Semantic.DeepEqual(answer.Spec, sent.Spec) {
		t.Errorf("answer's spec %+v, want %+v as sent", answer.Spec, sent.Spec)
	}
	if len(answer.ManagedFields) != 0 {
		t.Errorf("answered managed fields %+v", answer.ManagedFields)
	}
	stored, err := e.jobs.Job.Get(e.ctx, answer.Status.Job.Name, &metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if j := stored.(*stargate.Job); *j.Spec.BackoffLimit != 0 || *j.Spec.TTLSecondsAfterFinished != 60 || j.UID != answer.Status.Job.UID {
		t.Errorf("job %+v for answer %+v", j, answer.Status.Job)
	}
}

func TestRepaveErrors(t *testing.T) {
	e := newRepaveEnv(t)
	check := func(name string, err error, code int32, mention string) {
		t.Helper()
		status, ok := err.(apierrors.APIStatus)
		if !ok || status.Status().Code != code || !strings.Contains(err.Error(), mention) {
			t.Errorf("%s: got %v, want %d mentioning %q", name, err, code, mention)
		}
	}
	_, err := e.repave.Create(e.ctx, "server-404", repaveRequest("os-2-0-0"), nil, &metav1.CreateOptions{})
	check("missing hardware", err, http.StatusNotFound, `hardwares.stargate.io "server-404"`)

	_, err = e.repave.Create(e.ctx, "server-001", repaveRequest("os-9"), nil, &metav1.CreateOptions{})
	check("missing template", err, http.StatusNotFound, `templates.stargate.io "os-9"`)

	bad := repaveRequest("")
	bad.Spec.BackoffLimit = ptr.To[int32](-1)
	_, err = e.repave.Create(e.ctx, "server-001", bad, nil, &metav1.CreateOptions{})
	check("bad body", err, http.StatusUnprocessableEntity, "spec.templateRef.name")
	if !strings.Contains(err.Error(), "spec.backoffLimit") {
		t.Errorf("bad body: %v does not name spec.backoffLimit", err)
	}

	_, err = e.repave.Create(e.ctx, "server-001", &stargate.Template{}, nil, &metav1.CreateOptions{})
	check("wrong kind", err, http.StatusBadRequest, "RepaveRequest")

	denied := func(ctx context.Context, obj runtime.Object) error {
		if _, ok := obj.(*stargate.RepaveRequest); !ok {
			t.Errorf("admission saw %T, want the RepaveRequest", obj)
		}
		return apierrors.NewForbidden(stargate.Resource("hardwares"), "server-001", nil)
	}
	_, err = e.repave.Create(e.ctx, "server-001", repaveRequest("os-2-0-0"), denied, &metav1.CreateOptions{})
	check("admission denial", err, http.StatusForbidden, "server-001")

	if n := e.jobCount(t); n != 0 {
		t.Errorf("%d jobs stored by failed requests", n)
	}

	if _, err := e.repave.Create(e.ctx, "server-001", repaveRequest("os-2-0-0"), nil, &metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = e.repave.Create(e.ctx, "server-001", repaveRequest("os-2-0-0"), nil, &metav1.CreateOptions{})
	check("busy hardware", err, http.StatusConflict, "server-001-repave-")
}

func TestRepaveDryRunCreatesNothing(t *testing.T) {
	e := newRepaveEnv(t)
	obj, err := e.repave.Create(e.ctx, "server-001", repaveRequest("os-2-0-0"), nil, &metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatal(err)
	}
	answer := repaveAnswer(t, obj)
	if answer.Spec.TemplateRef.Name != "os-2-0-0" || answer.Spec.BackoffLimit == nil || *answer.Spec.BackoffLimit != 3 {
		t.Errorf("dry run answered spec %+v", answer.Spec)
	}
	if answer.Status.Job.UID != "" {
		t.Errorf("dry run answered uid %q, want none: no Job has it", answer.Status.Job.UID)
	}
	if _, err := e.jobs.Job.Get(e.ctx, answer.Status.Job.Name, &metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the dry run's Job %q: %v, want NotFound", answer.Status.Job.Name, err)
	}
	if n := e.jobCount(t); n != 0 {
		t.Errorf("dry run stored %d jobs", n)
	}
}

func TestRepaveRefusesHardwareBeingDeleted(t *testing.T) {
	e := newRepaveEnv(t)
	hw := validHardware()
	hw.Name, hw.Spec.MAC, hw.Spec.IPv4 = "server-002", "aa:bb:cc:dd:ee:02", "10.0.1.6"
	hw.Finalizers = []string{"stargate.io/test-hold"} // keeps it around while deleting
	if _, err := e.hw.Hardware.Create(e.ctx, hw, nil, &metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.hw.Hardware.Delete(e.ctx, "server-002", rest.ValidateAllObjectFunc, &metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := e.repave.Create(e.ctx, "server-002", repaveRequest("os-2-0-0"), nil, &metav1.CreateOptions{})
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "being deleted") {
		t.Errorf("got %v, want 409 saying it is being deleted", err)
	}
}
