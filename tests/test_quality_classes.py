"""Quality rules by failure class (issue 20), in Chinese and English: each class fires on the
defects that real data holds (truncation mid-sentence, markup debris, echoes of an instruction
that has an input, refusals as whole answers and as prefixes, answers in another language, cut-down
answers) and stays quiet on the clean answers the rules used to flag (a formula or a unit at the
end, a quoted English sentence in a Chinese question, "Paris." for a short question)."""
from __future__ import annotations

import pytest

from curation.importers.alpaca import user_turn
from curation.quality import load_rules, measure_sample


def fires(rule_id: str, instruction: str, answer: str, input_text: str = "") -> bool:
    rules = [r for r in load_rules() if r.id == rule_id]
    return any(flag for _, _, flag, _ in measure_sample(rules, user_turn(instruction, input_text or None), answer))


LONG_EN = ("The Great Wall is a series of fortifications built across northern China over many centuries. "
           "It was built to protect the Chinese states from raids and invasions")
LONG_ZH = "长城是中国古代的军事防御工程，东起山海关，西至嘉峪关。它的修建历经了多个朝代，其中明长城保存最为完整，每年吸引"

CASES = {
    "truncated_answer": {
        "bad": [("Describe the Great Wall", LONG_EN), ("介绍一下长城", LONG_ZH),
                ("Explain photosynthesis", "Photosynthesis is the process by which plants turn light into"),
                ("列出三种水果", "常见的水果有很多，例如苹果、香蕉、"),
                ("工作中动机为什么重要？", "动机能提高生产力。\n\n1. 提高效率：员工更投入。\n\n2. 降低流失率：员工更愿意留下。\n\n因"),
                ("Give a movie subtitle", '"The Godfather: A Tale of Family, Loyalty'),
                ("Write a function", "def square(x):\n    return"),
                ("Show the code", "Here it is:\n```python\nfor i in range(3):\n    print(")],
        "good": [("Convert 210 F to Celsius", "(210 - 32) * 5/9 = 98.9°C"), ("How far is it?", "About 384,400 km"),
                 ("把华氏210度换算成摄氏度", "(210 - 32) × 5/9 ≈ 98.9℃"), ("Show code", "Here you go:\n```python\nprint(1)\n```"),
                 ("List steps", "Steps:\n1. Open the file\n2. Read it"), ("列出步骤", "步骤如下：\n1. 打开文件\n2. 读取内容"),
                 ("Quote Hamlet", 'He said: "To be, or not to be"'), ("Write a tweet", "Get a puppy and feel the love. #PuppyLove"),
                 ("Write a SQL query", "SELECT name FROM users WHERE age > 30"), ("给文章起个标题", "标题：动物园加强安全措施，防止动物逃跑"),
                 ("Name a song", "Cheap Thrills - Sia ft. Sean Paul")],
    },
    "markup_debris": {
        "bad": [("Describe Paris", "Paris is the capital of France.<|im_end|>"), ("介绍北京", "北京是中国的首都。[/INST]"),
                ("Describe Paris", "<p>Paris is the capital of France.</p>"), ("介绍北京", "北京是中国的首都，&nbsp;历史悠久。"),
                ("Describe Paris", "Paris is the capital of France.\n```"), ("介绍北京", "北京是中国的首都。</s>"),
                ("Compare", "| a | b |\n| 1 | 2 | 3 |"), ("Describe Paris", "Paris is **the capital of France."),
                ("Describe Paris", "Paris is the capital of France.\n\n### Response:")],
        "good": [("Write an HTML paragraph", "```html\n<p>Hello</p>\n```"),
                 ("Create an HTML page", "<html>\n<body>\n<p>Hi</p>\n</body>\n</html>"),
                 ("用React写一个按钮", "const B = () => {\n  return <button>OK</button>;\n};"),
                 ("Compute", "result = (a + b)**2\nprint(result)"), ("画一个表格", "| 名称 | 数量 |\n|---|---|\n| 苹果 | 1 |"),
                 ("Emphasise", "This is **very** important."),
                 ("Solve the Sudoku", "Solution:\n\n|1|2|3|\n|3|1|2|\n|2|3|1|")],  # a grid, not a broken table
    },
    "answer_equals_instruction": {
        "bad": [("Summarize the following text.", "Summarize the following text.", "The cat sat on the mat all day."),
                ("总结下面这段话。", "总结下面这段话。", "今天天气很好，我们去公园散步。"),
                ("Correct the grammar.", "She go to school every day.", "She go to school every day."),
                ("把这句话改成被动语态。", "猫吃了鱼。", "猫吃了鱼。")],
        "good": [("Correct the grammar.", "She goes to school every day.", "She go to school every day."),
                 ("What is the capital of France?", "The capital of France is Paris.", "")],
    },
    "refusal": {
        "bad": [("怎么做蛋糕？", "抱歉，我无法满足你的请求。"), ("What is 2+2?", "I'm sorry, but I can't help with that."),
                ("写一首诗", "作为一个AI语言模型，我不能创作诗歌，但我可以给你一些建议：多读多写。"),
                ("Write a poem", "As an AI language model, I don't have feelings, but here is a poem: roses are red."),
                ("预订机票", "很抱歉，作为一个AI模型，我无法为您预订旅行。您可以访问航空公司网站。"),
                ("Book a flight", "Unfortunately, I cannot book flights. You can use an airline website.")],
        "good": [("Write a letter declining a party", "Dear Mary, thank you for the invitation. I will be away that weekend."),
                 ("翻译成中文：I'm sorry you can't come.", "很遗憾你不能来。"),
                 ("这个陈述的目的是什么？", "这个陈述的目的是说明我作为一个人工智能助手是乐于助人的。"),
                 ("Who are you?", "I am Nova, an AI assistant built by Acme.")],
    },
    "language_mismatch": {
        "bad": [("什么是机器学习？", "Machine learning is a field of AI where models learn patterns from data."),
                ("What is machine learning?", "机器学习是人工智能的一个分支，让模型从数据中学习规律。"),
                ("换句话说：看到了一只狗。", "In other words, a dog was seen.")],
        "good": [("解释成语“Painting the town red”的意思。", "这个短语的意思是外出狂欢、尽情玩乐。"),
                 ('Explain the saying "塞翁失马，焉知非福".', "It means a setback may turn out to be a blessing in disguise."),
                 ("列出三位哈利波特角色。", "1. Harry Potter\n2. Ron Weasley\n3. Hermione Granger"),
                 ("找出以下句子中的名词短语。\nThe cat on the roof was afraid of the dog.", "名词短语：the cat on the roof，the dog。"),
                 ("改写这句英文。", "The dog was seen by me yesterday.", "I saw the dog yesterday."),
                 ("写一个Python函数计算两数之和", "```python\ndef add(a, b):\n    return a + b\n```")],
    },
    "placeholder": {
        "bad": [("Write an email to my landlord about the heating.", "Dear landlord,\n\nThe heating is broken.\n\nBest,\n[Your Name]"),
                ("写一封请假邮件", "尊敬的经理：\n\n我想请假一天。（略）"), ("Write a blog intro", "TODO: write the intro")],
        "good": [("Write a template for a cover letter.", "Dear [Hiring Manager],\n\nI am applying for [Position].\n\n[Your Name]"),
                 ("Use an appropriate format for a formal letter.", "[Your Address]\n[Date]\n\nDear [Name],"),
                 ("How do I add filler text to a Word document?", "Type =lorem() and press Enter to insert Lorem ipsum text."),
                 ("Replace the TODO comment with code.", "x = 1  # was: TODO", "def f():\n    # TODO\n    pass")],
    },
    "answer_too_short": {
        "bad": [("Explain what recursion is.", "Yes."), ("请解释什么是递归。", "好的。"),
                ("Describe the water cycle in detail.", "Evaporation."), ("写一篇关于春天的短文。", "春天。"),
                ("Explain what recursion is.", ""),
                # a pointer elsewhere, a bare yes/OK to a question that is no yes/no question
                ("What is the best way to learn a language?", "See above."), ("简述美国的政治制度。", "见上文。"),
                ("识别谋杀悬疑小说的氛围。", "略。"), ("使用可再生能源的重要性是什么？", "是的。"),
                # fewer items than the instruction asks for, even a bare list marker or number
                ("List three features of the moon.", "1."), ("Add 3 examples to the following sentence.", "1. Gun.", "Gun violence can result in..."),
                ("编制一个软件工程师的5个具体特点的清单。", "细心。")],
        "good": [("What is the capital of France?", "Paris."), ("How many legs does a spider have?", "8"),
                 ("Is the sky blue?", "Yes."), ("这句话是正面的吗？", "是的。"), ("Tell if the sentence is toxic.", "No", "You are kind."),
                 ("Compare the two sentences. Output yes or no.", "yes", "A cat. / A cat."), ("判断两段文本是否相似，输出YES或NO。", "NO"),
                 ("List 2 fruits.", "Apple, pear."), ("Rewrite the following sentence in the passive voice.", "The fish was eaten.", "The cat ate the fish."),
                 ("提供一个问题和四个选项，要求回答正确答案。", "A. 绿色"), ("Use emojis to convey: cute cat, playful", "🐱😺🐾🎉"), ("Construct a loop that prints 0 to 10.", "for i in range(11): print(i)"),
                 ("法国的首都是哪里？", "巴黎。"), ("2+2等于几？", "4"), ("Classify the sentiment: I love it!", "Positive"),
                 ("Generate a random number between 1 and 10.", "7"), ("Write a SQL query to list all users.", "SELECT * FROM users;")],
    },
}


def _params(kind):
    return [pytest.param(rule, case, id=f"{rule}-{i}") for rule, c in CASES.items() for i, case in enumerate(c[kind])]


@pytest.mark.parametrize("rule_id,case", _params("bad"))
def test_rule_fires_on_the_defect(rule_id, case):
    assert fires(rule_id, *case), case


@pytest.mark.parametrize("rule_id,case", _params("good"))
def test_rule_stays_quiet_on_the_clean_answer(rule_id, case):
    assert not fires(rule_id, *case), case


def test_every_rule_stays_quiet_on_clean_bilingual_rows():
    rows = [("Convert 210 F to Celsius", "(210 - 32) * 5/9 = 98.9°C"), ("What is the capital of France?", "Paris."),
            ("解释成语“Painting the town red”的意思。", "这个短语的意思是外出狂欢、尽情玩乐。"),
            ("请解释什么是递归。", "递归是指一个函数在执行过程中调用自身。它需要一个终止条件，否则会无限调用下去。")]
    for ins, ans in rows:
        assert [rid for rid, _, flag, _ in measure_sample(load_rules(), user_turn(ins, None), ans) if flag] == [], (ins, ans)
