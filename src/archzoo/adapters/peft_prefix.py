def prefix_to_peft(model):
    raise NotImplementedError
def prefix_from_peft(*a):
    raise NotImplementedError
