package keepalived

import "strings"

// frame is an open block. A transparent frame stands for a '{' that had no
// directive to open: its contents go to the enclosing block, and its '}'
// closes nothing else.
type frame struct {
	node        *Node
	transparent bool
	open        line
}

// build reads every line and nests the directives by their braces.
func (p *parser) build(name string) *Node {
	root := &Node{File: name}
	stack := []frame{{node: root}}
	var last *Node // the directive a following '{' opens
	tooDeep := false
	for {
		l, ok := p.next()
		if !ok {
			break
		}
		top := stack[len(stack)-1]
		switch l.brace {
		case '{':
			switch {
			case len(stack) > maxBlockDepth:
				if !tooDeep {
					p.errorf(l.file, l.line, "blocks nested more than %d deep", maxBlockDepth)
					tooDeep = true
				}
				stack = append(stack, frame{node: top.node, transparent: true, open: l})
			case last == nil:
				p.errorf(l.file, l.line, "'{' with no directive before it")
				stack = append(stack, frame{node: top.node, transparent: true, open: l})
			default:
				last.Block = true
				stack = append(stack, frame{node: last, open: l})
			}
			last = nil
		case '}':
			if len(stack) == 1 {
				p.errorf(l.file, l.line, "'}' with no open block")
			} else {
				stack = stack[:len(stack)-1]
			}
			last = nil
		default:
			w, ok := words(l.text)
			if !ok {
				p.errorf(l.file, l.line, "unterminated quote")
			}
			if len(w) == 0 {
				continue
			}
			n := &Node{Name: w[0], File: l.file, Line: l.line}
			if len(w) > 1 {
				n.Args = w[1:]
			}
			if strings.HasSuffix(l.text, `\`) {
				p.warnf(l.file, l.line, "keepalived continues lines with '\\' only in $NAME= definitions; the '\\' stays part of %q", w[len(w)-1])
			}
			top.node.Children = append(top.node.Children, n)
			last = n
		}
	}
	for i := len(stack) - 1; i > 0; i-- {
		f := stack[i]
		what := "'{'"
		if !f.transparent {
			what = "block " + f.node.Name
		}
		p.errorf(f.open.file, f.open.line, "%s is not closed: missing '}'", what)
	}
	return root
}
