package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	stargateapply "stargate.io/stargate/pkg/generated/applyconfiguration/stargate/v1alpha1"
	clientset "stargate.io/stargate/pkg/generated/clientset/versioned"
)

const ns = "dc-west"

func hardware(name, mac, ip string) *v1alpha1.Hardware {
	return &v1alpha1.Hardware{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.HardwareSpec{MAC: mac, IPv4: ip,
			Inventory: v1alpha1.HardwareInventory{SKU: "GPU-8xH100", Location: "rack-5-slot-12"}},
	}
}

func TestDiscovery(t *testing.T) {
	ts := startServer(t, "")
	resources, err := ts.Client.Discovery().ServerResourcesForGroupVersion("stargate.io/v1alpha1")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]metav1.APIResource{}
	for _, r := range resources.APIResources {
		got[r.Name] = r
	}
	for name, want := range map[string]struct {
		short      string
		namespaced bool
	}{
		"hardwares": {"hw", true}, "templates": {"tmpl", true}, "jobs": {"sjob", true}, "datacenters": {"dc", false},
		"campaigns": {"camp", false},
	} {
		r, ok := got[name]
		if !ok {
			t.Errorf("%s missing from discovery", name)
			continue
		}
		if !slices.Equal(r.ShortNames, []string{want.short}) || r.Namespaced != want.namespaced || !slices.Contains(r.Categories, "stargate") {
			t.Errorf("%s: short names %v, namespaced %v, categories %v", name, r.ShortNames, r.Namespaced, r.Categories)
		}
	}
	for _, sub := range []string{"hardwares/status", "jobs/status", "datacenters/status", "campaigns/status"} {
		if _, ok := got[sub]; !ok {
			t.Errorf("%s missing from discovery", sub)
		}
	}
	if _, ok := got["templates/status"]; ok {
		t.Error("templates have no status, yet discovery lists templates/status")
	}
}

func TestCRUDThroughClientset(t *testing.T) {
	ts := startServer(t, "")
	ctx := context.Background()
	c := ts.Client.StargateV1alpha1()

	// The MAC is stored in one canonical spelling.
	hw, err := c.Hardwares(ns).Create(ctx, hardware("server-001", "AA-BB-CC-DD-EE-01", "10.0.1.5"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if hw.Spec.MAC != "aa:bb:cc:dd:ee:01" || hw.Generation != 1 {
		t.Errorf("created mac %q generation %d", hw.Spec.MAC, hw.Generation)
	}

	hw.Status.State, hw.Status.CurrentOS = v1alpha1.HardwareStateReady, "2.0.0"
	hw, err = c.Hardwares(ns).UpdateStatus(ctx, hw, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hw.Spec.Inventory.Location = "rack-6-slot-1"
	hw.Status = v1alpha1.HardwareStatus{}
	hw, err = c.Hardwares(ns).Update(ctx, hw, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if hw.Status.CurrentOS != "2.0.0" || hw.Generation != 2 {
		t.Errorf("after a spec update: status %+v generation %d", hw.Status, hw.Generation)
	}

	tmpl, err := c.Templates(ns).Create(ctx, &v1alpha1.Template{
		ObjectMeta: metav1.ObjectMeta{Name: "os-2-0-0", Namespace: ns},
		Spec:       v1alpha1.TemplateSpec{OSVersion: "2.0.0", OSImage: "https://images.example.com/ubuntu-22-aks-2.0.0.img"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	job, err := c.Jobs(ns).Create(ctx, &v1alpha1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "repave-server-001", Namespace: ns},
		Spec: v1alpha1.JobSpec{HardwareRef: v1alpha1.LocalObjectReference{Name: hw.Name},
			TemplateRef: &v1alpha1.LocalObjectReference{Name: tmpl.Name}, Operation: v1alpha1.OperationRepave},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if job.Status.Phase != v1alpha1.JobPending || job.Spec.BackoffLimit == nil || *job.Spec.BackoffLimit != 3 {
		t.Errorf("new job: phase %q backoffLimit %v; want Pending and the default 3", job.Status.Phase, job.Spec.BackoffLimit)
	}

	dc, err := c.Datacenters().Create(ctx, &v1alpha1.Datacenter{
		ObjectMeta: metav1.ObjectMeta{Name: ns}, Spec: v1alpha1.DatacenterSpec{Endpoint: "http://127.0.0.1:8080"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if dc.Spec.MaxConcurrentJobs == nil || *dc.Spec.MaxConcurrentJobs != 10 {
		t.Errorf("maxConcurrentJobs defaulted to %v, want 10", dc.Spec.MaxConcurrentJobs)
	}

	list, err := c.Hardwares(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("list: %v, %d items", err, len(list.Items))
	}
	if err := c.Jobs(ns).Delete(ctx, job.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Jobs(ns).Get(ctx, job.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get after delete: %v, want NotFound", err)
	}
}

func TestInvalidObjectsGet422WithFieldPaths(t *testing.T) {
	ts := startServer(t, "")
	ctx := context.Background()
	c := ts.Client.StargateV1alpha1()

	_, err := c.Hardwares(ns).Create(ctx, hardware("server-bad", "not-a-mac", "300.1.1.1"), metav1.CreateOptions{})
	assertInvalid(t, err, "spec.mac", "spec.ipv4")

	_, err = c.Jobs(ns).Create(ctx, &v1alpha1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "j", Namespace: ns},
		Spec:       v1alpha1.JobSpec{HardwareRef: v1alpha1.LocalObjectReference{Name: "server-001"}, Operation: "explode"},
	}, metav1.CreateOptions{})
	assertInvalid(t, err, "spec.operation")

	_, err = c.Datacenters().Create(ctx, &v1alpha1.Datacenter{
		ObjectMeta: metav1.ObjectMeta{Name: "dc-x"},
		Spec:       v1alpha1.DatacenterSpec{Endpoint: "ftp://x", MaxConcurrentJobs: ptr.To[int32](0)},
	}, metav1.CreateOptions{})
	assertInvalid(t, err, "spec.endpoint", "spec.maxConcurrentJobs")

	// A Job's spec cannot change after creation.
	if _, err := c.Hardwares(ns).Create(ctx, hardware("server-001", "aa:bb:cc:dd:ee:01", "10.0.1.5"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	job, err := c.Jobs(ns).Create(ctx, &v1alpha1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "reboot-1", Namespace: ns},
		Spec:       v1alpha1.JobSpec{HardwareRef: v1alpha1.LocalObjectReference{Name: "server-001"}, Operation: v1alpha1.OperationReboot},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	job.Spec.Operation = v1alpha1.OperationPowerOff
	_, err = c.Jobs(ns).Update(ctx, job, metav1.UpdateOptions{})
	assertInvalid(t, err, "spec")

	// Nothing invalid was stored.
	if l, _ := c.Hardwares(ns).List(ctx, metav1.ListOptions{}); len(l.Items) != 1 {
		t.Errorf("an invalid Hardware was stored: %v", l.Items)
	}
}

func assertInvalid(t *testing.T, err error, wantFields ...string) {
	t.Helper()
	if !apierrors.IsInvalid(err) {
		t.Fatalf("got %v, want 422 Invalid", err)
	}
	status := err.(apierrors.APIStatus).Status()
	if status.Code != http.StatusUnprocessableEntity || status.Details == nil {
		t.Fatalf("status %+v", status)
	}
	var fields []string
	for _, c := range status.Details.Causes {
		fields = append(fields, c.Field)
	}
	for _, f := range wantFields {
		if !slices.Contains(fields, f) {
			t.Errorf("causes %v do not name %s", fields, f)
		}
	}
}

func TestFieldSelectors(t *testing.T) {
	ts := startServer(t, "")
	ctx := context.Background()
	c := ts.Client.StargateV1alpha1()
	for i, ip := range []string{"10.0.1.5", "10.0.1.6", "10.0.1.7"} {
		h := hardware("server-00"+string(rune('1'+i)), "aa:bb:cc:dd:ee:0"+string(rune('1'+i)), ip)
		if i == 2 {
			h.Spec.Inventory.SKU = "CPU-2x"
		}
		if _, err := c.Hardwares(ns).Create(ctx, h, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for selector, want := range map[string][]string{
		"spec.mac=aa:bb:cc:dd:ee:02": {"server-002"},
		"spec.ipv4=10.0.1.7":         {"server-003"},
		"spec.inventory.sku=CPU-2x":  {"server-003"},
		"spec.inventory.sku!=CPU-2x": {"server-001", "server-002"},
		"status.state=":              {"server-001", "server-002", "server-003"},
		"metadata.name=server-001":   {"server-001"},
		"spec.mac=ff:ff:ff:ff:ff:ff": nil,
	} {
		list, err := c.Hardwares(ns).List(ctx, metav1.ListOptions{FieldSelector: selector})
		if err != nil {
			t.Errorf("%s: %v", selector, err)
			continue
		}
		var names []string
		for _, h := range list.Items {
			names = append(names, h.Name)
		}
		if !slices.Equal(names, want) {
			t.Errorf("%s: got %v, want %v", selector, names, want)
		}
	}
	_, err := c.Hardwares(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.bmc", "x").String()})
	if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), "spec.bmc") {
		t.Errorf("unsupported field selector: got %v, want 400 naming the field", err)
	}
	if _, err := c.Jobs(ns).List(ctx, metav1.ListOptions{FieldSelector: "spec.hardwareRef.name=server-001,status.phase=Pending"}); err != nil {
		t.Errorf("job field selectors: %v", err)
	}
}

func TestTableAPIColumns(t *testing.T) {
	ts := startServer(t, "")
	ctx := context.Background()
	if _, err := ts.Client.StargateV1alpha1().Hardwares(ns).Create(ctx, hardware("server-001", "aa:bb:cc:dd:ee:01", "10.0.1.5"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	body, err := ts.Client.StargateV1alpha1().RESTClient().Get().Namespace(ns).Resource("hardwares").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var table metav1.Table
	if err := json.Unmarshal(body, &table); err != nil {
		t.Fatal(err)
	}
	var cols []string
	for _, c := range table.ColumnDefinitions {
		if c.Priority == 0 {
			cols = append(cols, strings.ToUpper(c.Name))
		}
	}
	if got := strings.Join(cols, " "); got != "NAME STATE OS IPV4" {
		t.Errorf("kubectl get hardwares would print %q, the seed prints NAME STATE OS IPV4", got)
	}
	if len(table.Rows) != 1 || table.Rows[0].Cells[3] != "10.0.1.5" {
		t.Errorf("rows %+v", table.Rows)
	}
}

func TestOpenAPIServesSchemas(t *testing.T) {
	ts := startServer(t, "")
	body, err := ts.Client.Discovery().RESTClient().Get().AbsPath("/openapi/v3/apis/stargate.io/v1alpha1").DoRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"io.stargate.stargate.pkg.apis.stargate.v1alpha1.HardwareInventory", "location is free rack/slot text", `"x-kubernetes-group-version-kind"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("OpenAPI v3 lacks %q", want)
		}
	}
	if _, err := ts.Client.Discovery().RESTClient().Get().AbsPath("/openapi/v2").DoRaw(context.Background()); err != nil {
		t.Errorf("OpenAPI v2: %v", err)
	}
}

// TestAuthentication: no anonymous access; a certificate from the local CA
// outside system:masters is authenticated but forbidden.
func TestAuthentication(t *testing.T) {
	ts := startServer(t, "")
	caPEM, err := os.ReadFile(filepath.Join(ts.DataDir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, path := range []string{"/apis/stargate.io/v1alpha1/hardwares", "/readyz", "/metrics", "/openapi/v2"} {
		resp, err := anon.Get(ts.Config.Host + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without a client certificate: %d, want 401", path, resp.StatusCode)
		}
	}

	// Plain HTTP on the TLS port is refused.
	if resp, err := http.Get(strings.Replace(ts.Config.Host, "https://", "http://", 1) + "/readyz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("plain http answered %d", resp.StatusCode)
		}
	}

	viewer := rest.CopyConfig(ts.Config)
	viewer.CertFile, viewer.KeyFile = issueClientCert(t, ts.DataDir, "viewer", "viewers")
	_, err = clientset.NewForConfigOrDie(viewer).StargateV1alpha1().Hardwares(ns).List(context.Background(), metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("a non-masters certificate: got %v, want 403", err)
	}
}

func TestDataSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir)
	ctx := context.Background()
	created, err := ts.Client.StargateV1alpha1().Hardwares(ns).Create(ctx, hardware("server-001", "aa:bb:cc:dd:ee:01", "10.0.1.5"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ts.Stop()

	ts = startServer(t, dir)
	got, err := ts.Client.StargateV1alpha1().Hardwares(ns).Get(ctx, "server-001", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if got.UID != created.UID || got.Spec.MAC != created.Spec.MAC {
		t.Errorf("after restart got uid %s mac %s, want %s %s", got.UID, got.Spec.MAC, created.UID, created.Spec.MAC)
	}
}

// TestServerSideApply applies Hardware with the generated apply
// configurations, twice with two managers, and extracts each manager's part:
// this needs the apply configurations' schema to know every field.
func TestServerSideApply(t *testing.T) {
	ts := startServer(t, "")
	ctx := context.Background()
	c := ts.Client.StargateV1alpha1()
	apply := stargateapply.Hardware("server-001", ns).WithSpec(stargateapply.HardwareSpec().
		WithMAC("AA:BB:CC:DD:EE:01").WithIPv4("10.0.1.5").
		WithInventory(stargateapply.HardwareInventory().WithSKU("GPU-8xH100")))
	hw, err := c.Hardwares(ns).Apply(ctx, apply, metav1.ApplyOptions{FieldManager: "inventory-sync"})
	if err != nil {
		t.Fatal(err)
	}
	if hw.Spec.MAC != "aa:bb:cc:dd:ee:01" || hw.Spec.Inventory.SKU != "GPU-8xH100" {
		t.Errorf("applied: %+v", hw.Spec)
	}
	// A second manager owns only the location.
	loc := stargateapply.Hardware("server-001", ns).WithSpec(stargateapply.HardwareSpec().
		WithMAC("aa:bb:cc:dd:ee:01").WithIPv4("10.0.1.5").
		WithInventory(stargateapply.HardwareInventory().WithLocation("rack-5-slot-12")))
	if _, err := c.Hardwares(ns).Apply(ctx, loc, metav1.ApplyOptions{FieldManager: "rack-planner", Force: true}); err != nil {
		t.Fatal(err)
	}
	hw, err = c.Hardwares(ns).Get(ctx, "server-001", metav1.GetOptions{})
	if err != nil || hw.Spec.Inventory.SKU != "GPU-8xH100" || hw.Spec.Inventory.Location != "rack-5-slot-12" {
		t.Fatalf("merged: %v %+v", err, hw.Spec.Inventory)
	}
	extracted, err := stargateapply.ExtractHardware(hw, "rack-planner")
	if err != nil {
		t.Fatal(err)
	}
	if extracted.Spec == nil || extracted.Spec.Inventory == nil || extracted.Spec.Inventory.Location == nil ||
		*extracted.Spec.Inventory.Location != "rack-5-slot-12" || extracted.Spec.Inventory.SKU != nil {
		t.Errorf("rack-planner's fields: %+v", extracted.Spec)
	}
}

// An applied object that does not fit the schema is the caller's mistake:
// 400 with the offending field, never the 500 k8s.io/apiserver's field
// manager gives on its own; the object is left as it was.
func TestApplyOutsideTheSchemaIs400(t *testing.T) {
	ts := startServer(t, "")
	ctx := context.Background()
	c := ts.Client.StargateV1alpha1()
	if _, err := c.Hardwares(ns).Create(ctx, hardware("server-001", "aa:bb:cc:dd:ee:01", "10.0.1.5"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"unknown field":  `{"apiVersion":"stargate.io/v1alpha1","kind":"Hardware","metadata":{"name":"server-001"},"spec":{"notAField":1}}`,
		"wrong type":     `{"apiVersion":"stargate.io/v1alpha1","kind":"Hardware","metadata":{"name":"server-001"},"spec":{"mac":["x"]}}`,
		"spec is a list": `{"apiVersion":"stargate.io/v1alpha1","kind":"Hardware","metadata":{"name":"server-001"},"spec":[]}`,
		"status field":   `{"apiVersion":"stargate.io/v1alpha1","kind":"Hardware","metadata":{"name":"server-001"},"status":{"phase":"x"}}`,
	} {
		for _, sub := range []string{"", "status"} {
			req := c.RESTClient().Patch(types.ApplyYAMLPatchType).Namespace(ns).Resource("hardwares").Name("server-001").
				Param("fieldManager", "t").Body([]byte(body))
			if sub != "" {
				req = req.SubResource(sub)
			}
			err := req.Do(ctx).Error()
			if !apierrors.IsBadRequest(err) {
				t.Errorf("%s (%q): got %v, want 400", name, sub, err)
			}
		}
	}
	hw, err := c.Hardwares(ns).Get(ctx, "server-001", metav1.GetOptions{})
	if err != nil || hw.Spec.MAC != "aa:bb:cc:dd:ee:01" || len(hw.ManagedFields) != 1 {
		t.Errorf("after the refused applies: %v %+v, managers %d", err, hw.Spec, len(hw.ManagedFields))
	}
}
