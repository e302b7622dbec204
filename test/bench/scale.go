package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"stargate.io/stargate/test/framework"
)

// scale grows Stargate to scaleHardware Hardware and scaleJobs finished Jobs,
// then reads its memory, lists everything and restarts it.
func (b *bench) scale(ctx context.Context) error {
	section := fmt.Sprintf("6. Scale: %d Hardware and %d finished Jobs", b.sz.scaleHardware, b.sz.scaleJobs)
	have, err := countAll(ctx, b.paths[0].client, b.paths[0].gvr)
	if err != nil {
		return err
	}
	if more := b.sz.scaleHardware - have; more > 0 {
		if err := b.ensureNamespace(ctx, "bench-scale"); err != nil {
			return err
		}
		rate, err := b.createMany(ctx, b.paths[0], "bench-scale", more, 32, 1024)
		if err != nil {
			return err
		}
		b.add(row{section: section, name: fmt.Sprintf("creating %d more Hardware (direct, concurrency 32)", more), value: sample{rate}, unit: "/s"})
	}
	for round := 0; b.finishedJobs < b.sz.scaleJobs; round++ {
		n := min(b.sz.controllerJobs, b.sz.scaleJobs-b.finishedJobs)
		if _, _, err := b.jobRound(ctx, fmt.Sprintf("s%d", round), n, 0); err != nil {
			return err
		}
		b.finishedJobs += n
	}
	pid := b.c.PID("stargate-apiserver")
	b.add(row{section: section, name: "stargate-apiserver RSS now", value: sample{framework.RSSMiB(pid)}, unit: "MiB"})
	b.add(row{section: section, name: "stargate-apiserver peak RSS over the whole run (VmHWM)", value: sample{framework.PeakMiB(pid)}, unit: "MiB",
		target: "<= 1024 MiB", pass: passIf(framework.PeakMiB(pid) <= 1024)})

	var listAll sample
	var count int
	for range b.sz.reps {
		start := time.Now()
		n, err := countAll(ctx, b.paths[0].client, b.paths[0].gvr)
		if err != nil {
			return err
		}
		listAll, count = append(listAll, time.Since(start).Seconds()), n
	}
	if count < b.sz.scaleHardware {
		return fmt.Errorf("listed %d Hardware, want at least %d", count, b.sz.scaleHardware)
	}
	b.add(row{section: section, name: fmt.Sprintf("list all %d Hardware, every namespace, pages of 500 (direct)", count), value: listAll, unit: "s"})

	var restart sample
	for range b.sz.reps {
		start := time.Now()
		if err := b.c.RestartStargate(); err != nil {
			return err
		}
		restart = append(restart, time.Since(start).Seconds())
	}
	b.add(row{section: section, name: "restart (SIGKILL, start, /readyz ok, APIService Available)", value: restart, unit: "s",
		target: "<= 15 s", pass: passIf(restart.median() <= 15)})
	b.add(row{section: section, name: "stargate-apiserver RSS after the restarts", value: sample{framework.RSSMiB(b.c.PID("stargate-apiserver"))}, unit: "MiB"})
	return nil
}

func countAll(ctx context.Context, client dynamic.Interface, gvr schema.GroupVersionResource) (int, error) {
	count, cont := 0, ""
	for {
		page, err := client.Resource(gvr).List(ctx, metav1.ListOptions{Limit: 500, Continue: cont})
		if err != nil {
			return 0, err
		}
		count += len(page.Items)
		if cont = page.GetContinue(); cont == "" {
			return count, nil
		}
	}
}

// installCRD creates hardwares.crd.stargate.io with the schema Stargate
// serves for Hardware (its OpenAPI v3, generated from the same Go types),
// references resolved, so the CRD path validates the same fields.
func (b *bench) installCRD(ctx context.Context, client dynamic.Interface) error {
	raw, err := b.sg.Discovery().RESTClient().Get().AbsPath("/openapi/v3/apis/stargate.io/v1alpha1").DoRaw(ctx)
	if err != nil {
		return err
	}
	schemaJSON, err := hardwareSchema(raw)
	if err != nil {
		return err
	}
	crd := &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]interface{}{"name": "hardwares.crd.stargate.io"},
		"spec": map[string]interface{}{
			"group": "crd.stargate.io", "scope": "Namespaced",
			"names": map[string]interface{}{"plural": "hardwares", "singular": "hardware", "kind": "Hardware", "listKind": "HardwareList"},
			"versions": []interface{}{map[string]interface{}{
				"name": "v1alpha1", "served": true, "storage": true,
				"schema":           map[string]interface{}{"openAPIV3Schema": schemaJSON},
				"subresources":     map[string]interface{}{"status": map[string]interface{}{}},
				"selectableFields": []interface{}{map[string]interface{}{"jsonPath": ".spec.mac"}},
			}},
		},
	}}
	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	if _, err := client.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		got, err := client.Resource(crdGVR).Get(ctx, "hardwares.crd.stargate.io", metav1.GetOptions{})
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			for _, c := range conds {
				m := c.(map[string]interface{})
				if m["type"] == "Established" && m["status"] == "True" {
					// Discovery of the new group takes a moment more.
					time.Sleep(2 * time.Second)
					return nil
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("the CRD was not Established within a minute")
}

// hardwareSchema takes the Hardware schema out of an OpenAPI v3 document and
// makes it a CRD's structural schema: $refs inlined, metadata left to the
// server, extensions a CRD does not take removed.
func hardwareSchema(doc []byte) (map[string]interface{}, error) {
	var openapi struct {
		Components struct {
			Schemas map[string]map[string]interface{} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(doc, &openapi); err != nil {
		return nil, err
	}
	schemas := openapi.Components.Schemas
	var resolve func(v interface{}, depth int) interface{}
	resolve = func(v interface{}, depth int) interface{} {
		switch t := v.(type) {
		case map[string]interface{}:
			if depth > 20 {
				return map[string]interface{}{"type": "object", "x-kubernetes-preserve-unknown-fields": true}
			}
			out := map[string]interface{}{}
			for k, val := range t {
				switch {
				case k == "$ref":
					for rk, rv := range resolve(schemas[strings.TrimPrefix(val.(string), "#/components/schemas/")], depth+1).(map[string]interface{}) {
						out[rk] = rv
					}
				case k == "allOf":
					if list, ok := val.([]interface{}); ok && len(list) == 1 {
						for rk, rv := range resolve(list[0], depth+1).(map[string]interface{}) {
							out[rk] = rv
						}
					}
				case k == "default" || k == "x-kubernetes-group-version-kind" || strings.HasPrefix(k, "x-kubernetes-patch"):
				default:
					out[k] = resolve(val, depth+1)
				}
			}
			return out
		case []interface{}:
			out := make([]interface{}, len(t))
			for i := range t {
				out[i] = resolve(t[i], depth)
			}
			return out
		}
		return v
	}
	var hw map[string]interface{}
	for name, s := range schemas {
		if strings.HasSuffix(name, ".v1alpha1.Hardware") {
			hw = s
		}
	}
	if hw == nil {
		return nil, fmt.Errorf("no Hardware schema in Stargate's OpenAPI")
	}
	out := resolve(hw, 0).(map[string]interface{})
	props := out["properties"].(map[string]interface{})
	props["metadata"] = map[string]interface{}{"type": "object"}
	out["type"] = "object"
	return out, nil
}
