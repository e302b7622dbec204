package hardware

import (
	"context"
	"net/http"
	"strings"
	"testing"

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

func TestRepaveCreatesTheJob(t *testing.T) {
	e := newRepaveEnv(t)
	obj, err := e.repave.Create(e.ctx, "server-001", repaveRequest("os-2-0-0"), nil, &metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	j := obj.(*stargate.Job)
	if !strings.HasPrefix(j.Name, "server-001-repave-") || j.Labels[HardwareLabel] != "server-001" ||
		j.Spec.Operation != stargate.OperationRepave || j.Spec.TemplateRef.Name != "os-2-0-0" ||
		j.Spec.HardwareRef.Name != "server-001" || *j.Spec.BackoffLimit != 3 || *j.Spec.ActiveDeadlineSeconds != 3600 ||
		j.Status.Phase != stargate.JobPending {
		t.Errorf("job %+v", j)
	}
	if e.jobCount(t) != 1 {
		t.Error("the job was not stored")
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
	if obj.(*stargate.Job).Spec.HardwareRef.Name != "server-001" {
		t.Errorf("dry run answered %+v", obj)
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
