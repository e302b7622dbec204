package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

// TestRepaveSubresource drives POST .../hardwares/NAME/repave through the
// generated clientset: it answers 201 with the RepaveRequest, its spec as sent
// with defaults and status.job naming the Job made. It checks the subresource
// is discoverable on its own (so RBAC can grant it alone) and that OpenAPI
// describes its answer as a RepaveRequest.
func TestRepaveSubresource(t *testing.T) {
	ts := startServer(t, "")
	seedInventory(t, ts.Client)
	ctx := context.Background()
	c := ts.Client.StargateV1alpha1()
	req := &v1alpha1.RepaveRequest{Spec: v1alpha1.RepaveRequestSpec{
		TemplateRef: v1alpha1.LocalObjectReference{Name: "os-2-0-0"}, ActiveDeadlineSeconds: ptr.To[int64](3600)}}

	dry, err := c.Hardwares(ns).Repave(ctx, "server-001", req.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if dry.Status.Job == nil || !strings.HasPrefix(dry.Status.Job.Name, "server-001-repave-") || dry.Status.Job.UID != "" {
		t.Errorf("dry run answered status.job %+v, want a generated name and no uid", dry.Status.Job)
	}
	if l, err := c.Jobs(ns).List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 0 {
		t.Fatalf("dry run stored jobs: %v %+v", err, l)
	}

	answer, err := c.Hardwares(ns).Repave(ctx, "server-001", req.DeepCopy(), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if answer.Spec.TemplateRef.Name != "os-2-0-0" || ptr.Deref(answer.Spec.BackoffLimit, -1) != 3 ||
		ptr.Deref(answer.Spec.ActiveDeadlineSeconds, -1) != 3600 {
		t.Errorf("answer's spec %+v, want the one sent with backoffLimit 3", answer.Spec)
	}
	job := checkRepaveJob(t, ts, answer, "server-001", "os-2-0-0")
	if job.Status.Phase != v1alpha1.JobPending || *job.Spec.ActiveDeadlineSeconds != 3600 {
		t.Errorf("the Job made: %+v", job)
	}
	stored, err := c.Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: "stargate.io/hardware=server-001"})
	if err != nil || len(stored.Items) != 1 || stored.Items[0].Name != job.Name {
		t.Fatalf("stored jobs: %v %+v", err, stored)
	}

	_, err = c.Hardwares(ns).Repave(ctx, "server-001", req.DeepCopy(), metav1.CreateOptions{})
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), job.Name) {
		t.Errorf("second repave: %v, want 409 naming %s", err, job.Name)
	}
	_, err = c.Hardwares(ns).Repave(ctx, "server-404", req.DeepCopy(), metav1.CreateOptions{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("unknown hardware: %v", err)
	}

	// A body of another kind is a 400, not a 500.
	err = c.RESTClient().Post().Namespace(ns).Resource("hardwares").Name("server-001").SubResource("repave").
		Body([]byte(`{"apiVersion":"stargate.io/v1alpha1","kind":"Template","spec":{}}`)).
		SetHeader("Content-Type", "application/json").Do(ctx).Error()
	if !apierrors.IsBadRequest(err) {
		t.Errorf("wrong kind: %v, want 400", err)
	}

	resources, err := ts.Client.Discovery().ServerResourcesForGroupVersion("stargate.io/v1alpha1")
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, r := range resources.APIResources {
		if r.Name == "hardwares/repave" {
			found = r.Kind == "RepaveRequest" && len(r.Verbs) == 1 && r.Verbs[0] == "create"
		}
	}
	if !found {
		t.Errorf("discovery lacks hardwares/repave with verb create: %+v", resources.APIResources)
	}
	checkRepaveOpenAPI(ctx, t, ts)
}

// TestRepaveAnswersItsOwnKind: on the wire the answer is a 201 whose kind is
// RepaveRequest, with status.job and without managed fields (it is never
// stored).
func TestRepaveAnswersItsOwnKind(t *testing.T) {
	ts := startServer(t, "")
	seedInventory(t, ts.Client)
	var code int
	raw, err := ts.Client.StargateV1alpha1().RESTClient().Post().Namespace(ns).Resource("hardwares").Name("server-001").
		SubResource("repave").SetHeader("Content-Type", "application/json").
		Body([]byte(`{"apiVersion":"stargate.io/v1alpha1","kind":"RepaveRequest","spec":{"templateRef":{"name":"os-2-0-0"}}}`)).
		Do(context.Background()).StatusCode(&code).Raw()
	if err != nil {
		t.Fatal(err)
	}
	var answer struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		v1alpha1.RepaveRequest
	}
	if err := json.Unmarshal(raw, &answer); err != nil {
		t.Fatalf("%v:\n%s", err, raw)
	}
	if code != http.StatusCreated || answer.APIVersion != "stargate.io/v1alpha1" || answer.Kind != "RepaveRequest" {
		t.Fatalf("/repave answered %d:\n%s\nwant 201 with a stargate.io/v1alpha1 RepaveRequest", code, raw)
	}
	if len(answer.ManagedFields) != 0 {
		t.Errorf("the answer carries managed fields of an object never stored:\n%s", raw)
	}
	checkRepaveJob(t, ts, &answer.RepaveRequest, "server-001", "os-2-0-0")
}

// TestRepaveThroughControllerRuntime: controller-runtime's client decodes the
// answer of a subresource create into the object it sent. The RepaveRequest
// keeps its spec and gains status.job, which names the Job made.
func TestRepaveThroughControllerRuntime(t *testing.T) {
	ts := startServer(t, "")
	seedInventory(t, ts.Client)
	ctx := context.Background()
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(ts.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	hw := &v1alpha1.Hardware{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "server-001"}, hw); err != nil {
		t.Fatal(err)
	}

	dry := &v1alpha1.RepaveRequest{Spec: v1alpha1.RepaveRequestSpec{TemplateRef: v1alpha1.LocalObjectReference{Name: "os-2-0-0"}}}
	if err := c.SubResource("repave").Create(ctx, hw, dry, client.DryRunAll); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if dry.Spec.TemplateRef.Name != "os-2-0-0" || dry.Status.Job == nil || dry.Status.Job.Name == "" || dry.Status.Job.UID != "" {
		t.Errorf("dry run left %+v, want its spec and a Job name without uid", dry)
	}
	jobs := &v1alpha1.JobList{}
	if err := c.List(ctx, jobs, client.InNamespace(ns)); err != nil || len(jobs.Items) != 0 {
		t.Fatalf("dry run stored jobs: %v %+v", err, jobs.Items)
	}

	rr := &v1alpha1.RepaveRequest{Spec: v1alpha1.RepaveRequestSpec{
		TemplateRef: v1alpha1.LocalObjectReference{Name: "os-2-0-0"}, BackoffLimit: ptr.To[int32](1)}}
	if err := c.SubResource("repave").Create(ctx, hw, rr); err != nil {
		t.Fatal(err)
	}
	if rr.Spec.TemplateRef.Name != "os-2-0-0" || ptr.Deref(rr.Spec.BackoffLimit, -1) != 1 {
		t.Errorf("after /repave the RepaveRequest's spec is %+v, want the one sent", rr.Spec)
	}
	job := checkRepaveJob(t, ts, rr, "server-001", "os-2-0-0")
	if ptr.Deref(job.Spec.BackoffLimit, -1) != 1 {
		t.Errorf("the Job's backoffLimit is %v, want 1 as sent", job.Spec.BackoffLimit)
	}
}

// checkRepaveJob checks that answer's status.job names a stored Job, with its
// uid, that repaves hardware with template, and returns that Job.
func checkRepaveJob(t *testing.T, ts *testServer, answer *v1alpha1.RepaveRequest, hardware, template string) *v1alpha1.Job {
	t.Helper()
	if answer.Status.Job == nil || answer.Status.Job.Name == "" {
		t.Fatalf("the answer names no Job: %+v", answer)
	}
	job, err := ts.Client.StargateV1alpha1().Jobs(ns).Get(context.Background(), answer.Status.Job.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the Job named in status.job: %v", err)
	}
	if job.UID != answer.Status.Job.UID || !strings.HasPrefix(job.Name, hardware+"-repave-") ||
		job.Labels["stargate.io/hardware"] != hardware || job.Spec.HardwareRef.Name != hardware ||
		job.Spec.Operation != v1alpha1.OperationRepave || job.Spec.TemplateRef == nil || job.Spec.TemplateRef.Name != template {
		t.Errorf("status.job %+v names Job %+v, want the repave of %s with %s", answer.Status.Job, job, hardware, template)
	}
	return job
}

// checkRepaveOpenAPI checks that OpenAPI v3 describes /repave's body and its
// 201 answer as RepaveRequests, so `kubectl explain` and generated clients
// agree with the server.
func checkRepaveOpenAPI(ctx context.Context, t *testing.T, ts *testServer) {
	t.Helper()
	body, err := ts.Client.Discovery().RESTClient().Get().AbsPath("/openapi/v3/apis/stargate.io/v1alpha1").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type schemaRef struct {
		Schema struct {
			Ref string `json:"$ref"`
		} `json:"schema"`
	}
	var doc struct {
		Paths map[string]struct {
			Post struct {
				RequestBody struct {
					Content map[string]schemaRef `json:"content"`
				} `json:"requestBody"`
				Responses map[string]struct {
					Content map[string]schemaRef `json:"content"`
				} `json:"responses"`
			} `json:"post"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	path, ok := doc.Paths["/apis/stargate.io/v1alpha1/namespaces/{namespace}/hardwares/{name}/repave"]
	if !ok {
		t.Fatal("OpenAPI v3 lacks the repave path")
	}
	const want = ".v1alpha1.RepaveRequest"
	if ref := path.Post.RequestBody.Content["*/*"].Schema.Ref; !strings.HasSuffix(ref, want) {
		t.Errorf("OpenAPI says /repave takes %q, want a RepaveRequest", ref)
	}
	if ref := path.Post.Responses["201"].Content["application/json"].Schema.Ref; !strings.HasSuffix(ref, want) {
		t.Errorf("OpenAPI says /repave answers 201 with %q, want a RepaveRequest", ref)
	}
}
