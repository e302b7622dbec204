package datacenter_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"stargate.io/stargate/mockdc"
	"stargate.io/stargate/pkg/datacenter"
)

type openAPI struct {
	Paths      map[string]map[string]interface{} `json:"paths"`
	Components struct {
		Schemas map[string]struct {
			Required   []string               `json:"required"`
			Properties map[string]interface{} `json:"properties"`
		} `json:"schemas"`
	} `json:"components"`
}

func loadContract(t *testing.T) openAPI {
	t.Helper()
	data, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc openAPI
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// TestTypesMatchTheContract keeps the Go wire types and openapi.yaml in step:
// every JSON field of a type is a property of its schema and back.
func TestTypesMatchTheContract(t *testing.T) {
	doc := loadContract(t)
	for schema, typ := range map[string]interface{}{
		"JobRequest": datacenter.JobRequest{}, "Machine": datacenter.Machine{}, "Image": datacenter.Image{},
		"Job": datacenter.Job{}, "MachineState": datacenter.MachineState{}, "ErrorBody": datacenter.ErrorBody{},
		"JobChanges": datacenter.JobChanges{}, "MachineLookupRequest": datacenter.MachineLookupRequest{},
		"MachineLookup": datacenter.MachineLookup{}, "Capabilities": datacenter.Capabilities{},
		"JobChangesCapability": datacenter.JobChangesCapability{}, "MachineLookupCapability": datacenter.MachineLookupCapability{},
	} {
		var fields []string
		rt := reflect.TypeOf(typ)
		for i := range rt.NumField() {
			fields = append(fields, strings.Split(rt.Field(i).Tag.Get("json"), ",")[0])
		}
		var props []string
		for p := range doc.Components.Schemas[schema].Properties {
			props = append(props, p)
		}
		sort.Strings(fields)
		sort.Strings(props)
		if !slices.Equal(fields, props) {
			t.Errorf("%s: Go fields %v, contract properties %v", schema, fields, props)
		}
	}
}

// TestMockServesEveryPath: every operation in the contract is routed by the
// mock (it may answer 4xx for the dummy request, but never "no route").
func TestMockServesEveryPath(t *testing.T) {
	doc := loadContract(t)
	dc, err := mockdc.New(mockdc.DefaultOptions("dc-contract"))
	if err != nil {
		t.Fatal(err)
	}
	h := dc.Handler()
	for path, methods := range doc.Paths {
		for method := range methods {
			url := strings.NewReplacer("{id}", "dc-contract-job-1", "{mac}", "aa:bb:cc:dd:ee:01").Replace(path)
			req := httptest.NewRequest(strings.ToUpper(method), url, strings.NewReader("{}"))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if strings.Contains(rec.Body.String(), "no route") || rec.Code == http.StatusMethodNotAllowed {
				t.Errorf("%s %s: the mock does not serve it (%d %s)", method, path, rec.Code, rec.Body.String())
			}
		}
	}
}

// TestMockBatchAnswersMatchTheContract: the mock's answers on the batch
// endpoints hold every property the contract requires and no other, and its
// capabilities stay within the contract's bounds.
func TestMockBatchAnswersMatchTheContract(t *testing.T) {
	doc := loadContract(t)
	dc, err := mockdc.New(mockdc.DefaultOptions("dc-contract"))
	if err != nil {
		t.Fatal(err)
	}
	h := dc.Handler()
	submit := httptest.NewRequest(http.MethodPost, "/v1/jobs", strings.NewReader(`{"operation":"reboot","machine":{"mac":"aa:bb:cc:dd:ee:01"}}`))
	submit.Header.Set(datacenter.IdempotencyKeyHeader, "uid-1")
	h.ServeHTTP(httptest.NewRecorder(), submit)
	for _, tc := range []struct {
		method, path, body, schema string
		into                       interface{}
	}{
		{"GET", "/v1/capabilities", "", "Capabilities", &datacenter.Capabilities{}},
		{"GET", "/v1/jobs?changedSince=&limit=10", "", "JobChanges", &datacenter.JobChanges{}},
		{"POST", "/v1/machines:lookup", `{"macs":["aa:bb:cc:dd:ee:01","aa:bb:cc:dd:ee:02"]}`, "MachineLookup", &datacenter.MachineLookup{}},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body)))
		if rec.Code != http.StatusOK {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, rec.Code, rec.Body.String())
			continue
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
			t.Fatal(err)
		}
		for _, p := range doc.Components.Schemas[tc.schema].Required {
			if _, ok := raw[p]; !ok {
				t.Errorf("%s %s: required property %s missing from %s", tc.method, tc.path, p, rec.Body.String())
			}
		}
		dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(tc.into); err != nil {
			t.Errorf("%s %s: %v", tc.method, tc.path, err)
		}
	}
	var caps datacenter.Capabilities
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/capabilities", nil))
	if err := json.Unmarshal(rec.Body.Bytes(), &caps); err != nil || caps.JobChanges == nil || caps.MachineLookup == nil ||
		caps.JobChanges.MaxLimit > datacenter.MaxChangesLimit || caps.MachineLookup.MaxMACs > datacenter.MaxLookupMACs {
		t.Errorf("the mock's capabilities %+v (%v) exceed the contract", caps, err)
	}
}
