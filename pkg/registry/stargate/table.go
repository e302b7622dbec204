package stargate

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apiserver/pkg/registry/rest"
)

// Column is one printer column and how to read it off an object of type T.
type Column[T runtime.Object] struct {
	Definition metav1.TableColumnDefinition
	Cell       func(obj T) interface{}
}

// TableConvertor prints objects of type T, or lists of them, as a
// metav1.Table: the server-side printing that kubectl get, -o wide and -w use.
type TableConvertor[T runtime.Object] struct {
	Columns []Column[T]
}

var _ rest.TableConvertor = TableConvertor[runtime.Object]{}

// ConvertToTable implements rest.TableConvertor.
func (c TableConvertor[T]) ConvertToTable(ctx context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	table := &metav1.Table{}
	opts, _ := tableOptions.(*metav1.TableOptions)
	if opts == nil || !opts.NoHeaders {
		table.ColumnDefinitions = make([]metav1.TableColumnDefinition, len(c.Columns))
		for i, col := range c.Columns {
			table.ColumnDefinitions[i] = col.Definition
		}
	}

	addRow := func(obj runtime.Object) error {
		typed, ok := obj.(T)
		if !ok {
			return fmt.Errorf("cannot print %T in a table of %T", obj, *new(T))
		}
		cells := make([]interface{}, len(c.Columns))
		for i, col := range c.Columns {
			cells[i] = col.Cell(typed)
		}
		table.Rows = append(table.Rows, metav1.TableRow{Cells: cells, Object: runtime.RawExtension{Object: obj}})
		return nil
	}

	if meta.IsListType(object) {
		if err := meta.EachListItem(object, addRow); err != nil {
			return nil, err
		}
		if m, err := meta.ListAccessor(object); err == nil {
			table.ResourceVersion = m.GetResourceVersion()
			table.Continue = m.GetContinue()
			table.RemainingItemCount = m.GetRemainingItemCount()
		}
		return table, nil
	}
	if err := addRow(object); err != nil {
		return nil, err
	}
	if m, err := meta.Accessor(object); err == nil {
		table.ResourceVersion = m.GetResourceVersion()
	}
	return table, nil
}

// NameColumn is the NAME column every kind starts with.
func NameColumn[T runtime.Object]() Column[T] {
	return Column[T]{
		Definition: metav1.TableColumnDefinition{Name: "Name", Type: "string", Format: "name",
			Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]},
		Cell: func(obj T) interface{} {
			m, _ := meta.Accessor(obj)
			return m.GetName()
		},
	}
}

// AgeColumn is the AGE column; priority 1 shows it only with -o wide.
func AgeColumn[T runtime.Object](priority int32) Column[T] {
	return Column[T]{
		Definition: metav1.TableColumnDefinition{Name: "Age", Type: "string", Priority: priority,
			Description: metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"]},
		Cell: func(obj T) interface{} {
			m, _ := meta.Accessor(obj)
			return Since(m.GetCreationTimestamp())
		},
	}
}

// Since prints the time elapsed since ts as kubectl does (5m, 3h2m), or
// <unknown> for a zero time.
func Since(ts metav1.Time) string {
	if ts.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(ts.Time))
}

// StringColumn is a plain text column.
func StringColumn[T runtime.Object](name, description string, priority int32, cell func(T) string) Column[T] {
	return Column[T]{
		Definition: metav1.TableColumnDefinition{Name: name, Type: "string", Priority: priority, Description: description},
		Cell:       func(obj T) interface{} { return cell(obj) },
	}
}
