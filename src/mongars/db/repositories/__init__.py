"""Every query monGARS runs, one module per aggregate. Services call these; routers never do."""
