package hardware

import (
	"context"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/runtime/serializer/cbor"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/registry/stargate/registrytest"
)

// BenchmarkConvertToTable is kubectl get's server side: a page of 500 rows.
func BenchmarkConvertToTable(b *testing.B) {
	list := &stargate.HardwareList{}
	for i := range 500 {
		list.Items = append(list.Items, stargate.Hardware{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("server-%03d", i), Namespace: "dc-west"},
			Spec:   stargate.HardwareSpec{MAC: "aa:bb:cc:dd:ee:01", IPv4: "10.0.1.5"},
			Status: stargate.HardwareStatus{State: stargate.HardwareStateReady, CurrentOS: "2.0.0"}})
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tableConvertor.ConvertToTable(context.Background(), list, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConvertFromV1alpha1 is the decode path of every request: wire
// type to internal type through the scheme.
func BenchmarkConvertFromV1alpha1(b *testing.B) {
	scheme := registrytest.Scheme()
	in := &v1alpha1.Hardware{ObjectMeta: metav1.ObjectMeta{Name: "server-001", Namespace: "dc-west"},
		Spec: v1alpha1.HardwareSpec{MAC: "aa:bb:cc:dd:ee:01", IPv4: "10.0.1.5", Inventory: v1alpha1.HardwareInventory{SKU: "GPU-8xH100", Location: "rack-5"}}}
	out := &stargate.Hardware{}
	b.ReportAllocs()
	for b.Loop() {
		if err := scheme.Convert(in, out, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWireEncoding compares the encodings Stargate could serve and
// store a Hardware in (about 1 KiB in JSON, with managed fields as stored):
// the generic apiserver's JSON and the CBOR of k8s.io/apimachinery (behind
// the alpha gate CBORServingAndStorage). Stargate has no protobuf types.
func BenchmarkWireEncoding(b *testing.B) {
	scheme := registrytest.Scheme()
	codecs := serializer.NewCodecFactory(scheme, serializer.WithSerializer(cbor.NewSerializerInfo))
	now := metav1.Now()
	hw := &v1alpha1.Hardware{TypeMeta: metav1.TypeMeta{APIVersion: "stargate.io/v1alpha1", Kind: "Hardware"},
		ObjectMeta: metav1.ObjectMeta{Name: "server-001", Namespace: "dc-west", UID: "6f1c1e6e-3a57-4f0e-9a51-0c5e8f6f1a01",
			ResourceVersion: "123456", Generation: 1, CreationTimestamp: now, Labels: map[string]string{"rack": "5", "sku": "gpu"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "stargate.io/v1alpha1",
				Time: &now, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:labels":{".":{},"f:rack":{},"f:sku":{}}},"f:spec":{".":{},"f:ipv4":{},"f:mac":{},"f:inventory":{".":{},"f:location":{},"f:sku":{}}}}`)}}}},
		Spec:   v1alpha1.HardwareSpec{MAC: "aa:bb:cc:dd:ee:01", IPv4: "10.0.1.5", Inventory: v1alpha1.HardwareInventory{SKU: "GPU-8xH100", Location: "rack-5-slot-12"}},
		Status: v1alpha1.HardwareStatus{State: v1alpha1.HardwareStateReady, CurrentOS: "2.0.0"}}
	for _, mediaType := range []string{runtime.ContentTypeJSON, runtime.ContentTypeCBOR} {
		info, ok := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), mediaType)
		if !ok {
			b.Fatalf("no serializer for %s", mediaType)
		}
		data, err := runtime.Encode(info.Serializer, hw)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(mediaType+"/encode", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := runtime.Encode(info.Serializer, hw); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(data)), "wire-bytes")
		})
		b.Run(mediaType+"/decode", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := info.Serializer.Decode(data, nil, &v1alpha1.Hardware{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
