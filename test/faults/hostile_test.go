//go:build faults

package faults

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/test/framework"
)

// request is one hostile HTTP request.
type request struct {
	method, path, contentType string
	body                      []byte
}

// hostileBodies are malformed or abusive object bodies, each named.
func hostileBodies(kind string) map[string][]byte {
	deep := strings.Repeat(`{"a":`, 20000) + "1" + strings.Repeat("}", 20000)
	deepList := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	labels := map[string]string{}
	for i := range 20000 {
		labels[fmt.Sprintf("l%05d", i)] = "v"
	}
	var manyLabels strings.Builder
	manyLabels.WriteString(`{"apiVersion":"stargate.io/v1alpha1","kind":"` + kind + `","metadata":{"name":"many-labels","labels":{`)
	i := 0
	for k, v := range labels {
		if i > 0 {
			manyLabels.WriteString(",")
		}
		fmt.Fprintf(&manyLabels, "%q:%q", k, v)
		i++
	}
	manyLabels.WriteString(`}},"spec":{}}`)
	obj := func(meta, spec string) []byte {
		return []byte(`{"apiVersion":"stargate.io/v1alpha1","kind":"` + kind + `","metadata":` + meta + `,"spec":` + spec + `}`)
	}
	return map[string][]byte{
		"empty":                 nil,
		"null":                  []byte("null"),
		"number":                []byte("42"),
		"string":                []byte(`"hardware"`),
		"array":                 []byte(`[{"kind":"` + kind + `"}]`),
		"truncated":             []byte(`{"apiVersion":"stargate.io/v1alpha1","kind":"` + kind + `","metadata":{"name":"x"`),
		"trailing garbage":      append(obj(`{"name":"trailing"}`, `{}`), []byte("}}}]]]")...),
		"not json":              []byte("<xml>hardware</xml>"),
		"bad yaml":              []byte("apiVersion: stargate.io/v1alpha1\nkind: " + kind + "\nmetadata:\n  name: [unclosed\n  - x: : :\n"),
		"yaml tabs":             []byte("apiVersion: stargate.io/v1alpha1\nkind: " + kind + "\nmetadata:\n\tname: tabs\n"),
		"yaml anchors bomb":     []byte("a: &a [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"),
		"wrong kind":            []byte(`{"apiVersion":"stargate.io/v1alpha1","kind":"Pod","metadata":{"name":"wrong-kind"},"spec":{}}`),
		"wrong group":           []byte(`{"apiVersion":"apps/v1","kind":"` + kind + `","metadata":{"name":"wrong-group"},"spec":{}}`),
		"wrong version":         []byte(`{"apiVersion":"stargate.io/v9","kind":"` + kind + `","metadata":{"name":"wrong-version"},"spec":{}}`),
		"no kind":               []byte(`{"metadata":{"name":"no-kind"},"spec":{}}`),
		"spec is a list":        obj(`{"name":"spec-list"}`, `[]`),
		"spec is a string":      obj(`{"name":"spec-string"}`, `"x"`),
		"metadata is a string":  obj(`"x"`, `{}`),
		"name is a number":      obj(`{"name":12}`, `{}`),
		"fields of wrong types": obj(`{"name":"types"}`, `{"mac":123,"ipv4":true,"osVersion":[],"hardwareRef":"x","operation":7,"endpoint":{},"maxConcurrentJobs":"many","templateRef":5,"backoffLimit":"x"}`),
		"huge numbers":          obj(`{"name":"huge"}`, `{"backoffLimit":1e400,"activeDeadlineSeconds":-99999999999999999999,"maxConcurrentJobs":2147483648}`),
		"unknown fields":        obj(`{"name":"unknown","bogus":1}`, `{"notAField":true,"mac":"aa:bb:cc:00:00:01","ipv4":"10.9.9.9"}`),
		"duplicate fields":      []byte(`{"apiVersion":"stargate.io/v1alpha1","kind":"` + kind + `","metadata":{"name":"dup","name":"dup2"},"spec":{"mac":"x","mac":"y"}}`),
		"invalid name":          obj(`{"name":"Not_A..Valid Name!"}`, `{}`),
		"very long name":        obj(`{"name":"`+strings.Repeat("a", 10000)+`"}`, `{}`),
		"generateName only bad": obj(`{"generateName":"-bad-"}`, `{}`),
		"odd unicode":           obj(`{"name":"\u202eevil\u0000\ufffd","labels":{"k":"\u200b"},"annotations":{"\ud83d\ude00":"x"}}`, `{"mac":"\uff41\uff41:bb","ipv4":"\u0661\u0660.0.0.1","osImage":"https://\u0430pple.com/\u0000"}`),
		"invalid utf-8":         obj(`{"name":"utf8"}`, "{\"osVersion\":\"\xff\xfe\xc3\x28\"}"),
		"deep nesting":          []byte(deep),
		"deep list":             []byte(deepList),
		"huge label set":        []byte(manyLabels.String()),
		"over 3 MiB":            obj(`{"name":"big","annotations":{"x":"`+strings.Repeat("x", 3<<20+100)+`"}}`, `{}`),
		"bad resourceVersion":   obj(`{"name":"rv","resourceVersion":"not-a-number"}`, `{}`),
		"negative generation":   obj(`{"name":"gen","generation":-5,"uid":"../../etc"}`, `{}`),
		"finalizers junk":       obj(`{"name":"fin","finalizers":["Not Valid","","x/y/z"]}`, `{}`),
		"ownerRefs junk":        obj(`{"name":"own","ownerReferences":[{"apiVersion":"","kind":"","name":"","uid":""}]}`, `{}`),
		"managedFields junk":    obj(`{"name":"mf","managedFields":[{"manager":"x","operation":"Nope","fieldsType":"FieldsV9","fieldsV1":{"f:x":"y"}}]}`, `{}`),
		"status smuggled":       []byte(`{"apiVersion":"stargate.io/v1alpha1","kind":"` + kind + `","metadata":{"name":"smuggle"},"spec":{},"status":{"phase":"Succeeded","state":"ready","dcJobID":"x"}}`),
	}
}

// hostileCorpus builds the requests: every body against every write
// endpoint in several content types, patches of every type, and reads with
// bad selectors, resourceVersions, limits, continue tokens and paths.
func hostileCorpus() []request {
	const base = "/apis/stargate.io/v1alpha1"
	var out []request
	// Everything aims at the namespace "hostile" and the Datacenter
	// "hostile": some of these requests are valid (a DELETE of a collection
	// with an odd but harmless parameter deletes it all), and the other
	// tests' objects must not be touched.
	ns := base + "/namespaces/" + hostileNS
	kinds := []struct{ kind, collection, item string }{
		{"Hardware", ns + "/hardwares", ns + "/hardwares/hostile-target"},
		{"Template", ns + "/templates", ns + "/templates/ubuntu"},
		{"Job", ns + "/jobs", ns + "/jobs/hostile-job"},
		{"Datacenter", base + "/datacenters", base + "/datacenters/" + hostileNS},
		{"RepaveRequest", ns + "/hardwares/hostile-target/repave", ""},
	}
	for _, k := range kinds {
		bodies := hostileBodies(k.kind)
		for _, body := range bodies {
			for _, ct := range []string{"application/json", "application/yaml"} {
				out = append(out, request{http.MethodPost, k.collection, ct, body})
				out = append(out, request{http.MethodPost, k.collection + "?fieldValidation=Strict", ct, body})
			}
			out = append(out, request{http.MethodPost, k.collection, "application/vnd.kubernetes.protobuf", body})
			out = append(out, request{http.MethodPost, k.collection, "application/cbor", body})
			out = append(out, request{http.MethodPost, k.collection, "text/plain", body})
			if k.item == "" {
				continue
			}
			out = append(out, request{http.MethodPut, k.item, "application/json", body})
			out = append(out, request{http.MethodPut, k.item + "?fieldValidation=Strict", "application/json", body})
			if k.kind != "Template" {
				out = append(out, request{http.MethodPut, k.item + "/status", "application/json", body})
			}
			for _, pt := range []string{"application/merge-patch+json", "application/json-patch+json", "application/strategic-merge-patch+json"} {
				out = append(out, request{http.MethodPatch, k.item, pt, body})
			}
			out = append(out, request{http.MethodPatch, k.item + "?fieldManager=hostile&fieldValidation=Strict", "application/apply-patch+yaml", body})
		}
		for _, patch := range []string{`[{"op":"remove","path":"/spec"}]`, `[{"op":"replace","path":"/metadata/name","value":"renamed"}]`,
			`[{"op":"add","path":"/status/phase","value":"Succeeded"}]`, `[{"op":"test","path":"/x","value":1}]`, `[{"op":"move","from":"/a","path":"/b"}]`,
			`[{"op":"copy","from":"/spec","path":"/spec/x/y"}]`, `[` + strings.Repeat(`{"op":"add","path":"/metadata/labels/a","value":"b"},`, 5000) + `{}]`} {
			if k.item != "" {
				out = append(out, request{http.MethodPatch, k.item, "application/json-patch+json", []byte(patch)})
			}
		}
		if k.item == "" {
			continue
		}
		queries := []string{"fieldSelector=spec.unknown%3Dx", "fieldSelector=%3D%3D%3D", "fieldSelector=" + strings.Repeat("a%3Db,", 2000),
			"fieldSelector=metadata.name%3D%00", "labelSelector=%21%21%21", "labelSelector=a+in+(", "labelSelector=" + strings.Repeat("x", 70000),
			"resourceVersion=abc", "resourceVersion=-1", "resourceVersion=99999999999999999999999", "resourceVersion=1&resourceVersionMatch=Bogus",
			"resourceVersionMatch=Exact", "limit=-5", "limit=x", "limit=99999999999999999999", "continue=garbage", "continue=eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ",
			"watch=true&timeoutSeconds=-1", "watch=maybe", "timeoutSeconds=abc", "sendInitialEvents=true", "allowWatchBookmarks=nope",
			"fieldValidation=Bogus", "dryRun=Maybe", "pretty=%ff", "%zz=1"}
		for _, q := range queries {
			out = append(out, request{http.MethodGet, k.collection + "?" + q, "", nil})
			if k.kind != "Datacenter" { // a collection DELETE there would take the other tests' Datacenters
				out = append(out, request{http.MethodDelete, k.collection + "?" + q, "", nil})
			} else {
				out = append(out, request{http.MethodDelete, k.collection + "?fieldSelector=metadata.name%3D" + hostileNS + "&" + q, "", nil})
			}
		}
		for _, p := range []string{"/..%2F..%2Fsecrets", "/%00", "/" + strings.Repeat("n", 10000), "/UPPER", "/a/b/c/d", "/x/notasubresource",
			"/hostile-target/repave/extra", "/%F0%9F%98%80"} {
			for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPost} {
				out = append(out, request{m, k.collection + p, "application/json", []byte(`{}`)})
			}
		}
	}
	for _, p := range []string{"/apis/stargate.io/v1alpha1/widgets", "/apis/stargate.io/v9", "/apis/stargate.io/v1alpha1/namespaces/" + strings.Repeat("z", 300) + "/hardwares",
		ns + "/hardwares/hostile-target/repave?dryRun=All"} {
		out = append(out, request{http.MethodGet, p, "", nil}, request{http.MethodPost, p, "application/json", []byte(`{}`)})
	}
	return out
}

// TestHostileRequests sends the corpus straight to Stargate as the admin:
// no answer may be a 5xx, the server must not restart or log a panic, and
// it must be ready afterwards.
func TestHostileRequests(t *testing.T) {
	ctx := context.Background()
	if out, err := env.Kubectl("admin", "create", "namespace", hostileNS); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if _, err := sg.StargateV1alpha1().Hardwares(hostileNS).Create(ctx, hardware("hostile-target"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := sg.StargateV1alpha1().Datacenters().Create(ctx, &v1alpha1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: hostileNS},
		Spec: v1alpha1.DatacenterSpec{Endpoint: "https://hostile.invalid", Paused: true}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := sg.StargateV1alpha1().Templates(hostileNS).Create(ctx, &v1alpha1.Template{ObjectMeta: metav1.ObjectMeta{Name: "ubuntu"},
		Spec: v1alpha1.TemplateSpec{OSVersion: "2.0.0", OSImage: "https://images.example.com/ubuntu.img"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := sg.StargateV1alpha1().Jobs(hostileNS).Create(ctx, job("hostile-job", "hostile-target", "hostile", v1alpha1.OperationReboot), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := everythingElse(t)
	corpus := hostileCorpus()
	if len(corpus) < 1000 {
		t.Fatalf("the corpus has %d requests, want at least 1000", len(corpus))
	}
	tlsConfig, err := env.UserTLS("admin")
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: tlsConfig, MaxIdleConnsPerHost: 8}}
	pid := env.PID("stargate-apiserver")
	logsBefore, err := env.Logs()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	codes := map[int]int{}
	var serverErrors []string
	if err := framework.FanOut(ctx, len(corpus), 8, func(i int) error {
		r := corpus[i]
		code, answer, err := send(client, r)
		if err != nil {
			return fmt.Errorf("%s %.120s: %w", r.method, r.path, err)
		}
		mu.Lock()
		defer mu.Unlock()
		codes[code]++
		if code >= 500 {
			serverErrors = append(serverErrors, fmt.Sprintf("%d for %s %.100s (%s, %d bytes): %.300s", code, r.method, r.path, r.contentType, len(r.body), answer))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, e := range serverErrors {
		t.Error(e)
	}
	if env.PID("stargate-apiserver") != pid {
		t.Error("stargate-apiserver restarted during the hostile requests")
	}
	if err := env.Ready(env.StargatePort); err != nil {
		t.Errorf("not ready after the hostile requests: %v", err)
	}
	if after := everythingElse(t); !slices.Equal(before, after) {
		t.Errorf("objects outside the hostile namespace changed:\nbefore %v\nafter  %v", before, after)
	}
	logs, err := env.Logs()
	if err != nil {
		t.Fatal(err)
	}
	// What the server logged during the corpus: a recovered handler panic
	// (k8s.io/apiserver logs "apiserver panic'd", utilruntime "Observed a
	// panic", the finisher "panicked: true") or a crash ("panic:").
	during := string(logs["stargate-apiserver"][len(logsBefore["stargate-apiserver"]):])
	panics := 0
	for _, sign := range []string{"panic'd", "Observed a panic", "panicked: true", "panic:"} {
		panics += strings.Count(during, sign)
	}
	if panics != 0 {
		t.Errorf("stargate-apiserver logged %d panics during the corpus", panics)
	}
	var byCode []string
	for code, n := range codes {
		byCode = append(byCode, fmt.Sprintf("%d×%d", n, code))
	}
	sort.Strings(byCode)
	record(t, row{Fault: "hostile HTTP requests (malformed, wrong kinds/types, >3 MiB, deep nesting, odd unicode, bad selectors)",
		Runs: len(corpus), S5xx: len(serverErrors) + panics, Recovery: "-",
		Note: "answers " + strings.Join(byCode, ", ") + "; server ready after, same PID, no panic"})
}

const hostileNS = "hostile"

// everythingElse names every stargate.io object outside the hostile
// namespace and Datacenter, sorted.
func everythingElse(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	c := sg.StargateV1alpha1()
	var out []string
	add := func(kind string, m metav1.Object) {
		if m.GetNamespace() != hostileNS && !(kind == "Datacenter" && m.GetName() == hostileNS) {
			out = append(out, kind+"/"+m.GetNamespace()+"/"+m.GetName())
		}
	}
	hws, err1 := c.Hardwares("").List(ctx, metav1.ListOptions{})
	tmpls, err2 := c.Templates("").List(ctx, metav1.ListOptions{})
	jobs, err3 := c.Jobs("").List(ctx, metav1.ListOptions{})
	dcs, err4 := c.Datacenters().List(ctx, metav1.ListOptions{})
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		t.Fatal(err)
	}
	for i := range hws.Items {
		add("Hardware", &hws.Items[i])
	}
	for i := range tmpls.Items {
		add("Template", &tmpls.Items[i])
	}
	for i := range jobs.Items {
		add("Job", &jobs.Items[i])
	}
	for i := range dcs.Items {
		add("Datacenter", &dcs.Items[i])
	}
	slices.Sort(out)
	return out
}

// send makes one request and returns the status code and the start of the answer.
func send(client *http.Client, r request) (int, string, error) {
	u, err := url.Parse(fmt.Sprintf("https://127.0.0.1:%d", env.StargatePort))
	if err != nil {
		return 0, "", err
	}
	req, err := http.NewRequest(r.method, u.String(), bytes.NewReader(r.body))
	if err != nil {
		return 0, "", err
	}
	// The raw path is sent as written, escapes and all.
	req.URL.Opaque = "//" + u.Host + r.path
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, string(head), nil
}
