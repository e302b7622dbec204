package hardware

import (
	"stargate.io/stargate/pkg/apis/stargate"
	registry "stargate.io/stargate/pkg/registry/stargate"
)

// tableConvertor prints the seed's columns (NAME, STATE, OS, IPV4) and, with
// -o wide, the rest of the inventory.
var tableConvertor = registry.TableConvertor[*stargate.Hardware]{Columns: []registry.Column[*stargate.Hardware]{
	registry.NameColumn[*stargate.Hardware](),
	registry.StringColumn("State", "The server's state as last observed.", 0,
		func(hw *stargate.Hardware) string { return string(hw.Status.State) }),
	registry.StringColumn("OS", "The OS version installed.", 0,
		func(hw *stargate.Hardware) string { return hw.Status.CurrentOS }),
	registry.StringColumn("IPv4", "The server's IPv4 address.", 0,
		func(hw *stargate.Hardware) string { return hw.Spec.IPv4 }),
	registry.StringColumn("MAC", "The provisioning MAC address.", 1,
		func(hw *stargate.Hardware) string { return hw.Spec.MAC }),
	registry.StringColumn("SKU", "The hardware model.", 1,
		func(hw *stargate.Hardware) string { return hw.Spec.Inventory.SKU }),
	registry.StringColumn("Location", "Rack and slot.", 1,
		func(hw *stargate.Hardware) string { return hw.Spec.Inventory.Location }),
	registry.StringColumn("Active-Job", "The unfinished Job holding the server.", 1,
		func(hw *stargate.Hardware) string { return hw.Status.ActiveJob }),
	registry.AgeColumn[*stargate.Hardware](1),
}}
