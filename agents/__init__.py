"""The agents' logic: the proposer's meta-prompt and candidate checks, the transfer agent's pick.

The scorer's answering (``evaluator.scoring.answer_prompt``) and the objective
evaluator (``evaluator.metrics``, ``evaluator.objective``) live with the tasks
they judge, in ``tprompt.evaluator``; the graph's nodes (``tprompt.graph.nodes``)
run the agents on the models of ``tprompt.models``.
"""
