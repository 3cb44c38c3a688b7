// Command luarunner runs a resource health script the way Argo CD runs a health customization from
// argocd-cm: gopher-lua (Lua 5.1) with no standard library but package, base, table and a reduced os
// (time and date only), the Kubernetes object as the global `obj`, and a one-second time limit. There is
// no string library, so string.find, ("x"):match and friends fail here exactly as they fail in Argo CD.
//
// Usage:
//
//	luarunner -script deploy/argocd/health.lua -obj deploy/argocd/testdata/ready.yaml
//	luarunner -script deploy/argocd/health.lua -obj - < object.json
//
// The object may be YAML or JSON. On success the table the script returns is printed as one JSON line,
// e.g. {"message":"...","status":"Healthy"}, and the exit status is 0. A script error, a return value
// that is not a table, or a status Argo CD does not know exits with 1 and says why on stderr; bad
// arguments exit with 2.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

// The health statuses Argo CD accepts from a script.
var knownStatuses = map[string]bool{
	"Healthy":     true,
	"Progressing": true,
	"Degraded":    true,
	"Suspended":   true,
	"Missing":     true,
	"Unknown":     true,
}

// The os functions a health script may call; the rest (exit, execute, getenv, remove, ...) stay out.
var safeOsFunctions = []string{"time", "date"}

// The limit Argo CD puts on one script run.
const scriptTimeout = time.Second

func main() {
	scriptPath := flag.String("script", "", "the health script (Lua)")
	objPath := flag.String("obj", "", "the object, YAML or JSON; - for standard input")
	flag.Parse()
	if *scriptPath == "" || *objPath == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: luarunner -script health.lua -obj object.yaml")
		os.Exit(2)
	}
	script, err := os.ReadFile(*scriptPath)
	if err != nil {
		fail(2, err)
	}
	object, err := readObject(*objPath)
	if err != nil {
		fail(2, err)
	}
	result, err := run(string(script), object)
	if err != nil {
		fail(1, err)
	}
	out, err := json.Marshal(result)
	if err != nil {
		fail(1, err)
	}
	fmt.Println(string(out))
}

func fail(code int, err error) {
	fmt.Fprintln(os.Stderr, "luarunner:", err)
	os.Exit(code)
}

func readObject(path string) (map[string]interface{}, error) {
	var raw []byte
	var err error
	if path == "-" {
		raw, err = io.ReadAll(os.Stdin)
	} else {
		raw, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	data, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var object map[string]interface{}
	if err := json.Unmarshal(data, &object); err != nil {
		return nil, fmt.Errorf("%s: not an object: %w", path, err)
	}
	if object == nil {
		return nil, fmt.Errorf("%s: empty document", path)
	}
	return object, nil
}

// run executes the script against the object and returns the table it returned, checked.
func run(script string, object map[string]interface{}) (map[string]interface{}, error) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	if err := openLibraries(L); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	L.SetContext(ctx)
	L.SetGlobal("obj", toLua(L, object))
	if err := L.DoString(script); err != nil {
		return nil, err
	}
	returned := L.Get(-1)
	table, ok := returned.(*lua.LTable)
	if !ok {
		return nil, fmt.Errorf("the script returned %s, not a table", returned.Type())
	}
	value, err := fromLua(table, 0)
	if err != nil {
		return nil, err
	}
	result, ok := value.(map[string]interface{})
	if !ok {
		return nil, errors.New("the script returned a list, not a table with status and message")
	}
	status, _ := result["status"].(string)
	if !knownStatuses[status] {
		return nil, fmt.Errorf("the script returned an invalid health status %q", result["status"])
	}
	if message, present := result["message"]; present {
		if _, isString := message.(string); !isString {
			return nil, fmt.Errorf("the script returned a message that is not a string: %v", message)
		}
	}
	return result, nil
}

func openLibraries(L *lua.LState) error {
	libraries := []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, lua.OpenOs},
	}
	for _, library := range libraries {
		err := L.CallByParam(
			lua.P{Fn: L.NewFunction(library.open), NRet: 0, Protect: true},
			lua.LString(library.name),
		)
		if err != nil {
			return fmt.Errorf("opening %q: %w", library.name, err)
		}
	}
	// Keep only the harmless os functions, both as the global and for require("os").
	full, ok := L.GetGlobal(lua.OsLibName).(*lua.LTable)
	if !ok {
		return errors.New("the os library did not register")
	}
	safe := L.NewTable()
	for _, name := range safeOsFunctions {
		safe.RawSetString(name, full.RawGetString(name))
	}
	L.SetGlobal(lua.OsLibName, safe)
	loaded, ok := L.GetField(L.Get(lua.RegistryIndex), "_LOADED").(*lua.LTable)
	if !ok {
		return errors.New("the package library did not register")
	}
	loaded.RawSetString(lua.OsLibName, safe)
	return nil
}

// toLua converts decoded JSON as Argo CD does: maps to tables, lists to 1-based tables, numbers, bools,
// strings; null to nil.
func toLua(L *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case map[string]interface{}:
		table := L.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetString(key, toLua(L, item))
		}
		return table
	case []interface{}:
		table := L.CreateTable(len(v), 0)
		for _, item := range v {
			table.Append(toLua(L, item))
		}
		return table
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case bool:
		return lua.LBool(v)
	default:
		return lua.LNil
	}
}

// fromLua converts the returned table back: a table whose keys are exactly 1..n is a list, any other a
// map with string keys.
func fromLua(value lua.LValue, depth int) (interface{}, error) {
	if depth > 32 {
		return nil, errors.New("the returned table nests too deeply")
	}
	switch v := value.(type) {
	case *lua.LNilType:
		return nil, nil
	case lua.LBool:
		return bool(v), nil
	case lua.LNumber:
		return float64(v), nil
	case lua.LString:
		return string(v), nil
	case *lua.LTable:
		return tableFromLua(v, depth)
	default:
		return nil, fmt.Errorf("the returned table holds a %s, which has no JSON form", value.Type())
	}
}

func tableFromLua(table *lua.LTable, depth int) (interface{}, error) {
	length := table.Len()
	count := 0
	var keyErr error
	table.ForEach(func(key, _ lua.LValue) {
		count++
		if _, isString := key.(lua.LString); !isString {
			if _, isNumber := key.(lua.LNumber); !isNumber {
				keyErr = fmt.Errorf("the returned table has a %s key", key.Type())
			}
		}
	})
	if keyErr != nil {
		return nil, keyErr
	}
	if length > 0 && count == length {
		list := make([]interface{}, 0, length)
		for i := 1; i <= length; i++ {
			item, err := fromLua(table.RawGetInt(i), depth+1)
			if err != nil {
				return nil, err
			}
			list = append(list, item)
		}
		return list, nil
	}
	result := map[string]interface{}{}
	var itemErr error
	table.ForEach(func(key, item lua.LValue) {
		if itemErr != nil {
			return
		}
		converted, err := fromLua(item, depth+1)
		if err != nil {
			itemErr = err
			return
		}
		result[key.String()] = converted
	})
	if itemErr != nil {
		return nil, itemErr
	}
	return result, nil
}
