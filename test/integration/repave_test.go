package integration

import (
	"context"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

// TestRepaveSubresource drives POST .../hardwares/NAME/repave through the
// generated clientset and checks it is discoverable as its own subresource
// (so RBAC can grant it alone) and described in OpenAPI.
func TestRepaveSubresource(t *testing.T) {
	ts := startServer(t, "")
	ctx := context.Background()
	c := ts.Client.StargateV1alpha1()
	if _, err := c.Hardwares(ns).Create(ctx, hardware("server-001", "aa:bb:cc:dd:ee:01", "10.0.1.5"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Templates(ns).Create(ctx, &v1alpha1.Template{
		ObjectMeta: metav1.ObjectMeta{Name: "os-2-0-0", Namespace: ns},
		Spec:       v1alpha1.TemplateSpec{OSVersion: "2.0.0", OSImage: "https://images.example.com/os.img"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	req := &v1alpha1.RepaveRequest{Spec: v1alpha1.RepaveRequestSpec{TemplateRef: v1alpha1.LocalObjectReference{Name: "os-2-0-0"}}}

	dry, err := c.Hardwares(ns).Repave(ctx, "server-001", req, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil || dry.Spec.Operation != v1alpha1.OperationRepave {
		t.Fatalf("dry run: %v %+v", err, dry)
	}
	if l, _ := c.Jobs(ns).List(ctx, metav1.ListOptions{}); len(l.Items) != 0 {
		t.Fatalf("dry run stored %d jobs", len(l.Items))
	}

	job, err := c.Hardwares(ns).Repave(ctx, "server-001", req, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(job.Name, "server-001-repave-") || job.Status.Phase != v1alpha1.JobPending ||
		job.Labels["stargate.io/hardware"] != "server-001" {
		t.Errorf("repave answered %+v", job)
	}
	stored, err := c.Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: "stargate.io/hardware=server-001"})
	if err != nil || len(stored.Items) != 1 || stored.Items[0].Name != job.Name {
		t.Fatalf("stored jobs: %v %+v", err, stored)
	}

	_, err = c.Hardwares(ns).Repave(ctx, "server-001", req, metav1.CreateOptions{})
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), job.Name) {
		t.Errorf("second repave: %v, want 409 naming %s", err, job.Name)
	}
	_, err = c.Hardwares(ns).Repave(ctx, "server-404", req, metav1.CreateOptions{})
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
	body, err := ts.Client.Discovery().RESTClient().Get().AbsPath("/openapi/v3/apis/stargate.io/v1alpha1").DoRaw(ctx)
	if err != nil || !strings.Contains(string(body), "/hardwares/{name}/repave") {
		t.Errorf("OpenAPI v3 lacks the repave path (err %v)", err)
	}
}
