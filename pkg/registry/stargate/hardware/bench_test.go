package hardware

import (
	"context"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
